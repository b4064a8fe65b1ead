"""The risk model's numbers, worked by hand from docs/risk.md, and the insurance summary."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from tianmu.core.models import Asset, AssetKind, Finding, FindingKind, Severity, TriageStatus
from tianmu.situation import insurance_summary, score_finding, score_findings
from tianmu.situation.risk import combine, level, soft_cap

from .scenario import DB01, WEB01, scenario_findings

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def _factors(risk: object) -> dict[str, float]:
    return {f.name: f.effect for f in risk.factors}  # type: ignore[attr-defined]


def test_soft_cap_and_combination() -> None:
    assert soft_cap(63.0) == 63.0
    assert soft_cap(80.0) == 80.0
    # 80 + 20 × (1 − e^(−(136.5 − 80)/40)) = 95.129
    assert soft_cap(136.5) == pytest.approx(95.129, abs=0.001)
    assert soft_cap(1000.0) < 100.0
    assert combine([]) == 0.0
    assert combine([70.0]) == 70.0
    # 70 + 30 × (1 − (1 − 0.2 × 0.7)) = 74.2
    assert combine([70.0, 70.0]) == pytest.approx(74.2)
    assert (
        level(80) == "critical"
        and level(79.9) == "high"
        and level(40) == "medium"
        and level(19.9) == "minimal"
    )


def test_a_kev_on_an_internet_facing_host_open_for_months() -> None:
    host = Asset("gw01", AssetKind.HOST, criticality=3, tags=("internet-facing",))
    vuln = Finding(
        FindingKind.VULNERABILITY,
        "CVE-2024-3400",
        "PAN-OS GlobalProtect command injection",
        Severity.CRITICAL,
        host,
        score=9.8,
        data={"kev": True, "epss": 0.94},
        first_seen=NOW - timedelta(days=100),
    )
    risk = score_finding(vuln, now=NOW)
    # base 98 (CVSS × 10); KEV ×1.5 (EPSS is then not counted again); internet-facing ×1.3; 100 days ×1.2
    assert risk.base == 98.0
    assert _factors(risk) == {"cvss": 1.0, "kev": 1.5, "exposure": 1.3, "age": 1.2}
    raw = 98 * 1.5 * 1.3 * 1.2
    assert risk.score == pytest.approx(80 + 20 * (1 - math.exp(-(raw - 80) / 40)))
    assert risk.score == pytest.approx(99.52, abs=0.01)


def test_a_medium_flaw_on_an_internal_lab_box() -> None:
    lab = Asset("lab03", AssetKind.HOST, criticality=2, tags=("internal",))
    vuln = Finding(
        FindingKind.VULNERABILITY,
        "CVE-2023-48795",
        "Terrapin",
        Severity.MEDIUM,
        lab,
        score=5.3,
        data={"epss": 0.02},
        first_seen=NOW - timedelta(days=10),
    )
    risk = score_finding(vuln, now=NOW)
    # 53 × (0.8 + 0.7 × 0.02) × 0.8 (internal) × 0.8 (criticality 2) = 27.61
    assert _factors(risk) == {"cvss": 1.0, "epss": pytest.approx(0.814), "exposure": 0.8, "criticality": 0.8}
    assert risk.score == pytest.approx(27.611, abs=0.001)
    resolved = Finding(
        FindingKind.VULNERABILITY,
        "CVE-2023-48795",
        "Terrapin",
        Severity.MEDIUM,
        lab,
        score=5.3,
        status=TriageStatus.RESOLVED,
    )
    assert score_finding(resolved, now=NOW).score == 0.0


def test_old_activity_fades_and_old_flaws_weigh_more() -> None:
    plain = Asset("app", AssetKind.DIRECTORY)
    old_alert = Finding(
        FindingKind.DETECTION,
        "r",
        "t",
        Severity.HIGH,
        plain,
        evidence={"time": (NOW - timedelta(days=45)).isoformat()},
    )
    # 70 × 1.25 (observed) × 0.7 (45 days ago)
    assert score_finding(old_alert, now=NOW).score == pytest.approx(61.25)
    stale = Finding(
        FindingKind.MISCONFIGURATION, "m", "t", Severity.LOW, plain, first_seen=NOW - timedelta(days=40)
    )
    assert score_finding(stale, now=NOW).score == pytest.approx(22.0)  # 20 × 1.1


def test_scenario_scores_per_finding_asset_and_tenant() -> None:
    report = score_findings(scenario_findings(), [WEB01, DB01], now=NOW)
    by_rule = {(r.asset, r.rule_id): r for r in report.findings}
    # web01: criticality 4 (×1.2), internet-facing (×1.3), observed activity (×1.25): ×1.95 in all.
    assert by_rule[("web01", "intel:ip:203.0.113.45")].score == pytest.approx(95.129, abs=0.001)  # 70 → 136.5
    assert by_rule[("web01", "sigma:ssh-brute-force")].score == pytest.approx(83.523, abs=0.001)  # 45 → 87.75
    assert by_rule[("web01", "yara:Linux_Trojan_Mirai")].score == pytest.approx(
        98.163, abs=0.001
    )  # 90 → 175.5
    assert by_rule[("web01", "sigma:web-scanner")].score == pytest.approx(39.0)  # 20 × 1.95
    # db01: criticality 5 (×1.4), internal (×0.8), observed (×1.25): 45 × 1.4 = 63.
    assert by_rule[("db01", "sigma:ssh-brute-force")].score == pytest.approx(63.0)
    assets = {a.name: a for a in report.assets}
    # The i-th worst closes 0.2 × r_i / 100 / (i − 1) of the gap:
    # 98.163 + 1.837 × (1 − 0.80974 × 0.90487 × 0.94432 × 0.95824 × 0.98440) = 98.80
    assert assets["web01"].score == pytest.approx(98.80, abs=0.01)
    assert assets["web01"].level == "critical" and assets["web01"].findings == 6
    assert assets["web01"].top[0].rule_id == "yara:Linux_Trojan_Mirai"
    assert assets["db01"].score == pytest.approx(63.0) and assets["db01"].level == "high"
    # tenant: 98.80 + 1.20 × 0.2 × 0.63
    assert report.score == pytest.approx(98.95, abs=0.01) and report.level == "critical"
    assert report.drivers == {"activity": 7, "internet-facing": 6, "criticality": 7}
    as_dict = report.as_dict()
    assert as_dict["assets"][0]["name"] == "web01"
    assert {"name": "exposure", "value": "internet-facing", "effect": 1.3} in as_dict["findings"][0][
        "factors"
    ]


def test_insurance_summary_by_category() -> None:
    summary = insurance_summary(scenario_findings(), [WEB01, DB01])
    categories = {c.category: c for c in summary.categories}
    # Mirai on web01 (criticality 4 → 1 000 000): ransomware at p = 0.9.
    assert categories["ransomware"].likelihood == pytest.approx(0.9)
    assert categories["ransomware"].expected == pytest.approx(900_000.0)
    # Account takeover: web01 brute force (medium, 0.5) and login (high, 0.9) → 1 − 0.5 × 0.1 = 0.95
    # on 1 000 000; db01 brute force (medium, 0.5: activity is not halved for an internal host, it is
    # already happening) on 5 000 000.
    assert categories["account-takeover"].expected == pytest.approx(0.95 * 1_000_000 + 0.5 * 5_000_000)
    assert categories["account-takeover"].likelihood == pytest.approx(1 - 0.05 * 0.5)
    assert categories["business-interruption"].expected == pytest.approx(
        900_000.0
    )  # critical on criticality 4
    assert summary.total_expected == pytest.approx(sum(c.expected for c in summary.categories))
    assert categories["ransomware"].drivers[0]["id"] == "yara:Linux_Trojan_Mirai"


def test_many_findings_keep_headroom_so_estates_differ() -> None:
    """A hundred and fifty findings no longer close the gap to 100: bad and terrible estates differ."""
    medium, critical, worst = combine([56.25] * 150), combine([91.13] * 150), combine([99.52] * 150)
    assert medium == pytest.approx(76.9, abs=0.1) and critical == pytest.approx(96.9, abs=0.1)
    assert medium < critical < worst < 100.0
    assert combine([56.25] * 1000) < 85.0  # the margin grows with the logarithm of the count


def _go_advisory(severity: Severity, **data: object) -> Finding:
    """A Go-database finding: no published severity (score None), as the matcher makes it."""
    host = Asset("build01", AssetKind.HOST)
    return Finding(
        FindingKind.VULNERABILITY,
        "GO-2099-0001",
        "A flaw",
        severity,
        host,
        data={"unscored": True, **data},
        first_seen=NOW - timedelta(days=1),
    )


def test_an_unscored_advisory_weighs_less_than_a_rated_medium() -> None:
    unscored = score_finding(_go_advisory(Severity.MEDIUM, severity_source="unknown"), now=NOW)
    assert (unscored.base, unscored.score) == (30.0, 30.0)
    assert [(f.name, f.value) for f in unscored.factors] == [("severity", "unscored")]
    rated = Finding(
        FindingKind.VULNERABILITY, "GHSA-x", "A flaw", Severity.MEDIUM, Asset("build01", AssetKind.HOST)
    )
    assert score_finding(rated, now=NOW).score == 45.0
    # Findings stored before `unscored` existed say so by their source.
    legacy = _go_advisory(Severity.MEDIUM, severity_source="unknown")
    del legacy.data["unscored"]
    assert score_finding(legacy, now=NOW).score == 30.0
    # 112 unscored findings no longer add up like 112 rated mediums.
    many = score_findings([_go_advisory(Severity.MEDIUM, severity_source="unknown")] * 112, now=NOW)
    assert many.score == pytest.approx(combine([30.0] * 112))
    assert many.score < combine([45.0] * 112)


def test_kev_or_epss_raise_an_unscored_advisory_to_the_base_of_the_rank_they_gave() -> None:
    kev = score_finding(_go_advisory(Severity.HIGH, severity_source="kev", kev=True), now=NOW)
    # 30 × 70/30: the base of a high; KEV's ×1.5 is not applied a second time.
    assert _factors(kev) == {"severity": 1.0, "kev": pytest.approx(70 / 30)}
    assert kev.score == pytest.approx(70.0)
    ransomware = score_finding(_go_advisory(Severity.CRITICAL, severity_source="kev", kev=True), now=NOW)
    assert ransomware.score == pytest.approx(soft_cap(90.0))
    epss = score_finding(_go_advisory(Severity.HIGH, severity_source="epss", epss=0.61), now=NOW)
    assert _factors(epss) == {
        "severity": 1.0,
        "epss": pytest.approx(70 / 30),
    } and epss.score == pytest.approx(70.0)
    low = score_finding(_go_advisory(Severity.LOW, severity_source="epss", epss=0.004), now=NOW)
    assert low.score == pytest.approx(20.0)
    report = score_findings([_go_advisory(Severity.HIGH, severity_source="kev", kev=True)], now=NOW)
    assert report.drivers == {"kev": 1}
