"""The risk model: per finding, per asset, per tenant, 0–100, with the factors that made each score.

Documented in docs/risk.md; the numbers below are the model, and tests state them.

Per finding::

    raw  = base × exploitation × exposure × criticality × age
    risk = raw                                   when raw ≤ 80
           80 + 20 × (1 − e^(−(raw − 80) / 40))  above (a soft ceiling: never 100, still ordered)

- base: the CVSS score × 10 when the finding has one, else by severity (critical 90, high 70,
  medium 45, low 20, info 5); an unscored vulnerability (its advisory publishes no severity,
  `data["unscored"]`) weighs 30, less than a rated medium, because nobody rated it.
- unscored and raised: when KEV or EPSS gave an unscored vulnerability its severity, that severity's
  base replaces the 30 (shown as the kev or epss factor: ×70/30 for high, ×90/30 for critical, ×45/30,
  ×20/30), and neither is applied a second time.
- exploitation: ×1.5 when listed in CISA KEV; else ×(0.8 + 0.7 × EPSS) when an EPSS probability is
  known (×0.8 at 0 %, ×1.5 at 100 %); ×1.25 for observed activity (detection, malware, intel hit);
  else ×1.0.
- exposure: ×1.3 internet-facing (asset tag `internet-facing`/`external`/`dmz`, finding data
  `exposure: internet`, or an exposure finding, which remote checks make from the outside);
  ×0.8 tagged `internal`; else ×1.0.
- criticality: asset criticality 1–5 → ×0.6, ×0.8, ×1.0, ×1.2, ×1.4.
- age: standing conditions (vulnerability, misconfiguration, exposure) grow riskier the longer they stay
  open: ×1.1 after 30 days, ×1.2 after 90. Observed activity fades: ×0.7 after 30 days, ×0.5 after 90.
- resolved and false-positive findings carry no risk.

Per asset and per tenant, scores combine the same way: the worst sets the floor and the i-th worst
(i ≥ 2) closes 20 % × (its score / 100) / (i − 1) of the gap left to 100::

    combined = r1 + (100 − r1) × (1 − Π_{i≥2} (1 − 0.2 × r_i / 100 / (i − 1)))

so many small problems add up, but never to more than one severe one plus a margin, and the margin
grows with the logarithm of their number rather than closing the gap: 160 medium findings do not reach
100, and an estate of many critical ones still scores above one of many medium ones. Levels: critical
≥ 80, high ≥ 60, medium ≥ 40, low ≥ 20, else minimal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tianmu.core.models import Asset, Finding, FindingKind, Severity, TriageStatus, utcnow

from .timeline import as_utc, finding_time

__all__ = [
    "AssetRisk",
    "Factor",
    "FindingRisk",
    "RiskReport",
    "combine",
    "is_unscored",
    "level",
    "score_finding",
    "score_findings",
    "soft_cap",
]

SEVERITY_BASE = {
    Severity.CRITICAL: 90.0,
    Severity.HIGH: 70.0,
    Severity.MEDIUM: 45.0,
    Severity.LOW: 20.0,
    Severity.INFO: 5.0,
}
UNSCORED_BASE = 30.0
"""The base of a vulnerability whose advisory publishes no severity and that KEV/EPSS did not rank."""
CRITICALITY = {1: 0.6, 2: 0.8, 3: 1.0, 4: 1.2, 5: 1.4}
KEV_FACTOR = 1.5
OBSERVED_FACTOR = 1.25
INTERNET_FACTOR = 1.3
INTERNAL_FACTOR = 0.8
TAIL_WEIGHT = 0.2
SOFT_KNEE = 80.0
SOFT_SPAN = 40.0
INTERNET_TAGS = frozenset({"internet-facing", "external", "dmz", "public"})
STANDING = frozenset({FindingKind.VULNERABILITY, FindingKind.MISCONFIGURATION, FindingKind.EXPOSURE})
OBSERVED = frozenset({FindingKind.DETECTION, FindingKind.MALWARE, FindingKind.INTEL})
_LEVELS = ((80.0, "critical"), (60.0, "high"), (40.0, "medium"), (20.0, "low"))
_TOP = 5


@dataclass(frozen=True, slots=True)
class Factor:
    """One reason a score is what it is: `name` (kev, epss, exposure...), shown value, multiplier."""

    name: str
    value: str
    effect: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "effect": round(self.effect, 3)}


@dataclass(frozen=True, slots=True)
class FindingRisk:
    fingerprint: str
    rule_id: str
    title: str
    kind: str
    asset: str
    score: float
    base: float
    factors: tuple[Factor, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "id": self.rule_id,
            "title": self.title,
            "kind": self.kind,
            "asset": self.asset,
            "score": round(self.score, 1),
            "base": round(self.base, 1),
            "factors": [f.as_dict() for f in self.factors],
        }


@dataclass(frozen=True, slots=True)
class AssetRisk:
    name: str
    kind: str
    criticality: int
    score: float
    level: str
    findings: int
    top: tuple[FindingRisk, ...]
    """The findings that weigh most, worst first (at most five)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "criticality": self.criticality,
            "score": round(self.score, 1),
            "level": self.level,
            "findings": self.findings,
            "top": [f.as_dict() for f in self.top],
        }


@dataclass(slots=True)
class RiskReport:
    """The tenant's score, its assets' scores, every finding's score, and the factor totals."""

    tenant: str
    score: float
    level: str
    computed_at: datetime
    assets: list[AssetRisk] = field(default_factory=list)
    findings: list[FindingRisk] = field(default_factory=list)
    drivers: dict[str, int] = field(default_factory=dict)
    """How many scored findings each factor raised (kev, internet-facing, ...): the tenant's why."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Posture points (one per assessment) when the caller adds them, oldest first."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "score": round(self.score, 1),
            "level": self.level,
            "computed_at": self.computed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "drivers": dict(self.drivers),
            "assets": [a.as_dict() for a in self.assets],
            "findings": [f.as_dict() for f in self.findings],
            "history": list(self.history),
        }


def level(score: float) -> str:
    for floor, name in _LEVELS:
        if score >= floor:
            return name
    return "minimal"


def combine(scores: Iterable[float]) -> float:
    """Worst score plus a diminishing share of the others (module docstring)."""
    ordered = sorted((s for s in scores if s > 0), reverse=True)
    if not ordered:
        return 0.0
    remaining = 1.0
    # Each further finding weighs less than the one before (1/rank): with a constant weight, a hundred
    # findings of any size closed the whole gap and every estate scored 100.
    for rank, score in enumerate(ordered[1:], start=1):
        remaining *= 1.0 - TAIL_WEIGHT * score / 100.0 / rank
    return min(100.0, ordered[0] + (100.0 - ordered[0]) * (1.0 - remaining))


def is_unscored(finding: Finding) -> bool:
    """A vulnerability whose advisories publish no severity: its severity is a rank, not a rating.

    `data["unscored"]` says so; findings stored before it existed carry `severity_source: unknown`.
    """
    if finding.kind is not FindingKind.VULNERABILITY or finding.score is not None:
        return False
    return finding.data.get("unscored") is True or finding.data.get("severity_source") == "unknown"


def _kev(finding: Finding) -> bool:
    kev = finding.data.get("kev")
    return bool(kev) and kev not in ("false", "False", "no")


def _float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _exposure(finding: Finding, asset: Asset) -> Factor | None:
    tags = {t.lower() for t in asset.tags}
    exposure = str(finding.data.get("exposure", "")).lower()
    if finding.kind is FindingKind.EXPOSURE or exposure in ("internet", "internet-facing", "public"):
        return Factor("exposure", "internet-facing", INTERNET_FACTOR)
    if tags & INTERNET_TAGS:
        return Factor("exposure", "internet-facing", INTERNET_FACTOR)
    if "internal" in tags or exposure == "internal":
        return Factor("exposure", "internal", INTERNAL_FACTOR)
    return None


def _age(finding: Finding, now: datetime) -> Factor | None:
    since = finding_time(finding) if finding.kind in OBSERVED else as_utc(finding.first_seen)
    if since is None:
        return None
    days = (now - since).total_seconds() / 86400
    if finding.kind in OBSERVED:
        if days > 90:
            return Factor("age", f"{int(days)} days ago", 0.5)
        if days > 30:
            return Factor("age", f"{int(days)} days ago", 0.7)
        return None
    if days > 90:
        return Factor("age", f"open {int(days)} days", 1.2)
    if days > 30:
        return Factor("age", f"open {int(days)} days", 1.1)
    return None


def score_finding(
    finding: Finding, asset: Asset | None = None, *, now: datetime | None = None
) -> FindingRisk:
    """One finding's risk and why (module docstring). `asset` overrides the finding's own asset record,
    whose criticality and tags the store may not have loaded."""
    asset = asset or finding.asset
    now = now or utcnow()
    factors: list[Factor] = []
    epss = _float(finding.data.get("epss"))
    if is_unscored(finding):
        base = UNSCORED_BASE
        factors.append(Factor("severity", "unscored", 1.0))
        factors.extend(_unscored_exploitation(finding, epss))
    else:
        if finding.score is not None and finding.kind is FindingKind.VULNERABILITY:
            base = max(0.0, min(100.0, finding.score * 10.0))
            factors.append(Factor("cvss", f"{finding.score:.1f}", 1.0))
        else:
            base = SEVERITY_BASE[finding.severity]
            factors.append(Factor("severity", finding.severity.value, 1.0))
        if _kev(finding):
            factors.append(Factor("kev", "known exploited", KEV_FACTOR))
        elif epss is not None:
            factors.append(Factor("epss", f"{epss * 100:.1f}%", 0.8 + 0.7 * max(0.0, min(1.0, epss))))
        elif finding.kind in OBSERVED:
            factors.append(Factor("activity", f"observed ({finding.kind.value})", OBSERVED_FACTOR))
    exposure = _exposure(finding, asset)
    if exposure is not None:
        factors.append(exposure)
    criticality = max(1, min(5, asset.criticality))
    if criticality != 3:
        factors.append(Factor("criticality", str(criticality), CRITICALITY[criticality]))
    age = _age(finding, now)
    if age is not None:
        factors.append(age)
    if finding.status in (TriageStatus.RESOLVED, TriageStatus.FALSE_POSITIVE):
        factors.append(Factor("status", finding.status.value, 0.0))
    raw = base
    for factor in factors:
        raw *= factor.effect
    score = soft_cap(raw)
    return FindingRisk(
        fingerprint=finding.fingerprint,
        rule_id=finding.rule_id,
        title=finding.title,
        kind=finding.kind.value,
        asset=asset.name,
        score=score,
        base=base,
        factors=tuple(factors),
    )


def _unscored_exploitation(finding: Finding, epss: float | None) -> list[Factor]:
    """KEV or EPSS ranked an unscored finding: its severity's base replaces the unscored one."""
    source = finding.data.get("severity_source")
    raised = SEVERITY_BASE[finding.severity] / UNSCORED_BASE
    if _kev(finding) and source == "kev":
        return [Factor("kev", f"known exploited: ranked {finding.severity.value}", raised)]
    if epss is not None and source == "epss":
        return [Factor("epss", f"{epss * 100:.1f}%: ranked {finding.severity.value}", raised)]
    return []


def soft_cap(raw: float) -> float:
    """Linear up to 80, then approaching 100 without reaching it, so that a KEV on a crown jewel still
    ranks above a plain critical instead of both being pinned at 100."""
    if raw <= SOFT_KNEE:
        return max(0.0, raw)
    return SOFT_KNEE + (100.0 - SOFT_KNEE) * (1.0 - math.exp(-(raw - SOFT_KNEE) / SOFT_SPAN))


def _asset_key(asset: Asset) -> tuple[str, str, str]:
    return (asset.tenant, asset.kind.value, asset.name)


def score_findings(
    findings: Iterable[Finding],
    assets: Sequence[Asset] | Mapping[Any, Asset] | None = None,
    *,
    tenant: str | None = None,
    now: datetime | None = None,
) -> RiskReport:
    """Score every finding, then each asset, then the tenant.

    `assets` gives the authoritative asset records (criticality, tags); a finding whose asset is not
    among them is scored with its own record.
    """
    now = now or utcnow()
    known: dict[tuple[str, str, str], Asset] = {}
    for asset in assets.values() if isinstance(assets, Mapping) else assets or ():
        known[_asset_key(asset)] = asset
    items = list(findings)
    tenant = tenant or (items[0].asset.tenant if items else "default")
    per_asset: dict[tuple[str, str, str], list[FindingRisk]] = {}
    scored: list[FindingRisk] = []
    drivers: dict[str, int] = {}
    for finding in items:
        if finding.asset.tenant != tenant:
            continue
        asset = known.get(_asset_key(finding.asset), finding.asset)
        risk = score_finding(finding, asset, now=now)
        if risk.score <= 0:
            continue
        scored.append(risk)
        per_asset.setdefault(_asset_key(asset), []).append(risk)
        known.setdefault(_asset_key(asset), asset)
        for factor in risk.factors:
            if factor.effect > 1.0:
                driver = factor.name if factor.name != "exposure" else "internet-facing"
                drivers[driver] = drivers.get(driver, 0) + 1
    asset_risks: list[AssetRisk] = []
    for asset_key, risks in per_asset.items():
        asset = known[asset_key]
        risks.sort(key=lambda r: -r.score)
        score = combine(r.score for r in risks)
        asset_risks.append(
            AssetRisk(
                asset.name,
                asset.kind.value,
                asset.criticality,
                score,
                level(score),
                len(risks),
                tuple(risks[:_TOP]),
            )
        )
    asset_risks.sort(key=lambda a: (-a.score, a.name))
    scored.sort(key=lambda r: (-r.score, r.fingerprint))
    total = combine(a.score for a in asset_risks)
    return RiskReport(tenant, total, level(total), now, asset_risks, scored, drivers)
