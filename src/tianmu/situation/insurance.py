"""Cyber-insurance style summary: expected exposure by loss category over the next twelve months.

Underwriters ask "how likely is a claim, of which kind, and how large could it be?". This summary
answers from the findings, with every assumption written here and in docs/risk.md:

- Each open finding gets an annual probability of leading to a loss, p:
  - a vulnerability with an EPSS probability (30-day) → 1 − (1 − EPSS)¹² ; listed in KEV → at least
    0.3; neither → by severity (critical 0.10, high 0.05, medium 0.02, low 0.005, info 0);
  - an unscored vulnerability (its advisory publishes no severity, `risk.is_unscored`) that neither
    KEV nor EPSS ranked → 0.0133, the medium 0.02 scaled as the risk model scales its base (30 against
    45): its `medium` is a default, not a rating, and must not weigh as one. Ranked by KEV or EPSS, it
    takes that rank's probability and the KEV floor or EPSS formula as any vulnerability;
  - internet-facing exposure keeps p; an asset tagged internal halves it (not for observed
    activity below: that is already happening);
  - observed activity (detection, malware, intel hit) → 0.9 for high and critical, 0.5 for medium,
    0.2 below: it is already happening;
  - misconfiguration and exposure findings → by severity, as a vulnerability without EPSS.
- Each finding falls in one or more loss categories:
  - `ransomware`: malware, KEV entries known to be used in ransomware campaigns, activity reaching the
    impact tactic;
  - `data-breach`: vulnerabilities, exposures and misconfigurations, activity reaching collection or
    exfiltration;
  - `account-takeover`: activity at initial access or credential access, identity findings;
  - `business-interruption`: anything of critical severity on an asset of criticality 4 or 5.
- Per asset and category: P = 1 − Π(1 − p). Expected exposure = P × the asset's value, where the value
  comes from its criticality through `asset_values` (default 1: 10 000 … 5: 5 000 000, in the
  currency the user sets; replace them with the organisation's own figures).
- Per category: the sum over assets; the drivers are the findings with the largest p × value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tianmu.core.models import Asset, Finding, FindingKind, Severity, TriageStatus

from .risk import SEVERITY_BASE, UNSCORED_BASE, is_unscored
from .tactics import TechniqueResolver, finding_tactics

__all__ = [
    "CATEGORIES",
    "DEFAULT_ASSET_VALUES",
    "UNSCORED_P",
    "CategoryExposure",
    "InsuranceSummary",
    "insurance_summary",
]

CATEGORIES = ("ransomware", "data-breach", "account-takeover", "business-interruption")
DEFAULT_ASSET_VALUES = {1: 10_000.0, 2: 50_000.0, 3: 250_000.0, 4: 1_000_000.0, 5: 5_000_000.0}
_SEVERITY_P = {
    Severity.CRITICAL: 0.10,
    Severity.HIGH: 0.05,
    Severity.MEDIUM: 0.02,
    Severity.LOW: 0.005,
    Severity.INFO: 0.0,
}
UNSCORED_P = _SEVERITY_P[Severity.MEDIUM] * UNSCORED_BASE / SEVERITY_BASE[Severity.MEDIUM]
"""The annual probability of an unscored vulnerability no KEV or EPSS ranked (module docstring)."""
_RANKED = frozenset({"kev", "epss"})
_KEV_FLOOR = 0.3
_OBSERVED = frozenset({FindingKind.DETECTION, FindingKind.MALWARE, FindingKind.INTEL})
_DRIVERS = 3


@dataclass(slots=True)
class CategoryExposure:
    category: str
    likelihood: float
    """Probability that at least one asset suffers this kind of loss within a year (0–1)."""
    expected: float
    """Expected loss in `currency`: Σ over assets of P(asset) × value(asset)."""
    assets: int
    drivers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "likelihood": round(self.likelihood, 4),
            "expected": round(self.expected, 2),
            "assets": self.assets,
            "drivers": self.drivers,
        }


@dataclass(slots=True)
class InsuranceSummary:
    currency: str
    total_expected: float
    categories: list[CategoryExposure]

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "total_expected": round(self.total_expected, 2),
            "categories": [c.as_dict() for c in self.categories],
        }


def _probability(finding: Finding, asset: Asset) -> float:
    if finding.kind in _OBSERVED:
        if finding.severity.at_least(Severity.HIGH):
            return 0.9
        return 0.5 if finding.severity is Severity.MEDIUM else 0.2
    p = _SEVERITY_P[finding.severity]
    if is_unscored(finding) and finding.data.get("severity_source") not in _RANKED:
        p = UNSCORED_P
    epss = finding.data.get("epss") if finding.kind is FindingKind.VULNERABILITY else None
    if isinstance(epss, int | float) and not isinstance(epss, bool):
        p = 1.0 - (1.0 - max(0.0, min(1.0, float(epss)))) ** 12
    if finding.data.get("kev"):
        p = max(p, _KEV_FLOOR)
    if "internal" in {t.lower() for t in asset.tags}:
        p /= 2
    return p


def _categories(finding: Finding, asset: Asset, resolver: TechniqueResolver | None) -> set[str]:
    out: set[str] = set()
    tactics = set(finding_tactics(finding, resolver))
    if finding.kind is FindingKind.MALWARE or "impact" in tactics:
        out.add("ransomware")
    kev = finding.data.get("kev_details")
    if isinstance(kev, Mapping) and str(kev.get("ransomware", "")).lower() in ("known", "true"):
        out.add("ransomware")
    if finding.kind in (FindingKind.VULNERABILITY, FindingKind.EXPOSURE, FindingKind.MISCONFIGURATION):
        out.add("data-breach")
    if tactics & {"collection", "exfiltration"}:
        out.add("data-breach")
    if tactics & {"initial-access", "credential-access"} or finding.data.get("identity"):
        out.add("account-takeover")
    if finding.severity is Severity.CRITICAL and asset.criticality >= 4:
        out.add("business-interruption")
    if not out and finding.kind in _OBSERVED:
        out.add("data-breach")
    return out


def insurance_summary(
    findings: Iterable[Finding],
    assets: Iterable[Asset] = (),
    *,
    asset_values: Mapping[int, float] | None = None,
    currency: str = "USD",
    resolver: TechniqueResolver | None = None,
) -> InsuranceSummary:
    """Expected exposure by category (module docstring); resolved and false positives are left out."""
    values = dict(DEFAULT_ASSET_VALUES)
    values.update(asset_values or {})
    known = {(a.tenant, a.kind.value, a.name): a for a in assets}
    # category -> asset key -> list of (p, finding)
    buckets: dict[str, dict[tuple[str, str, str], list[tuple[float, Finding]]]] = {c: {} for c in CATEGORIES}
    records: dict[tuple[str, str, str], Asset] = {}
    for finding in findings:
        if finding.status in (TriageStatus.RESOLVED, TriageStatus.FALSE_POSITIVE):
            continue
        key = (finding.asset.tenant, finding.asset.kind.value, finding.asset.name)
        asset = known.get(key, finding.asset)
        records[key] = asset
        p = _probability(finding, asset)
        if p <= 0:
            continue
        for category in _categories(finding, asset, resolver):
            buckets[category].setdefault(key, []).append((p, finding))
    out: list[CategoryExposure] = []
    for category in CATEGORIES:
        none_hit = 1.0
        expected = 0.0
        drivers: list[tuple[float, Finding, float]] = []
        for key, items in buckets[category].items():
            value = values.get(max(1, min(5, records[key].criticality)), 0.0)
            survive = 1.0
            for p, finding in items:
                survive *= 1.0 - p
                drivers.append((p * value, finding, p))
            expected += (1.0 - survive) * value
            none_hit *= survive
        drivers.sort(key=lambda d: (-d[0], d[1].fingerprint))
        out.append(
            CategoryExposure(
                category,
                1.0 - none_hit,
                expected,
                len(buckets[category]),
                [
                    {
                        "fingerprint": f.fingerprint,
                        "id": f.rule_id,
                        "title": f.title,
                        "asset": f.asset.name,
                        "probability": round(p, 4),
                        "expected": round(weight, 2),
                    }
                    for weight, f, p in drivers[:_DRIVERS]
                ],
            )
        )
    return InsuranceSummary(currency, sum(c.expected for c in out), out)
