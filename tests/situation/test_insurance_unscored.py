"""The insurance view weighs an unscored advisory below a rated medium, unless KEV or EPSS ranked it.

Before, a finding whose `medium` was only the default for an advisory without severity got the rated
medium's annual probability, 0.02.
"""

from __future__ import annotations

import pytest

from tianmu.core.models import Asset, AssetKind, Finding, FindingKind, Severity
from tianmu.situation import insurance_summary
from tianmu.situation.insurance import UNSCORED_P

HOST = Asset("build01", AssetKind.HOST, criticality=3)
VALUE = 250_000.0
"""The default value of an asset of criticality 3."""


def _vuln(rule: str, severity: Severity, **data: object) -> Finding:
    return Finding(FindingKind.VULNERABILITY, rule, "A flaw", severity, HOST, data=dict(data))


def _breach(*findings: Finding) -> tuple[float, float]:
    summary = insurance_summary(findings, [HOST])
    (breach,) = (c for c in summary.categories if c.category == "data-breach")
    return breach.likelihood, breach.expected


def test_an_unscored_advisory_weighs_less_than_a_rated_medium() -> None:
    assert round(UNSCORED_P, 6) == round(0.02 * 30 / 45, 6)
    rated = _breach(_vuln("GHSA-x", Severity.MEDIUM, severity_source="ghsa"))
    assert rated == pytest.approx((0.02, 0.02 * VALUE))
    unscored = _breach(_vuln("GO-2099-0001", Severity.MEDIUM, unscored=True, severity_source="unknown"))
    assert unscored == pytest.approx((UNSCORED_P, UNSCORED_P * VALUE))
    # Stored before the flag existed: the unknown severity source says the same.
    legacy = _breach(_vuln("GO-2099-0002", Severity.MEDIUM, severity_source="unknown"))
    assert legacy[0] == pytest.approx(UNSCORED_P)
    # A driver's probability says so too.
    summary = insurance_summary([_vuln("GO-2099-0001", Severity.MEDIUM, unscored=True)], [HOST])
    assert summary.categories[1].drivers[0]["probability"] == round(UNSCORED_P, 4)


def test_kev_or_epss_ranked_unscored_advisories_weigh_as_their_rank() -> None:
    kev = _breach(_vuln("GO-2099-0003", Severity.HIGH, unscored=True, severity_source="kev", kev=True))
    assert kev[0] == pytest.approx(0.3)  # the KEV floor, as any KEV-listed flaw
    epss = _breach(_vuln("GO-2099-0004", Severity.MEDIUM, unscored=True, severity_source="epss", epss=0.2))
    assert epss[0] == pytest.approx(1 - 0.8**12)
    # A scored advisory keeps its own probability: nothing changed for it.
    assert _breach(_vuln("GHSA-y", Severity.HIGH, severity_source="cvss"))[0] == pytest.approx(0.05)
