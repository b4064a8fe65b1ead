"""Advisories that publish no severity: unscored, ranked by KEV and EPSS where known, and said so.

The records, the KEV catalogue and the EPSS scores are written by the tests: one Go-style advisory per
case (no `severity`, no `database_specific.severity`), each aliasing its own CVE.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vulns_helpers import ASSET, comp

from tianmu.core.models import Finding, FindingKind, Severity
from tianmu.store.database import Store
from tianmu.vulns.engine import VulnMatcher, sort_findings, unscored_note
from tianmu.vulns.kb import import_path

# module -> (CVE, KEV ransomware use or None when not in KEV, EPSS or None)
CASES = {
    "example.com/plain": ("CVE-2099-0001", None, None),
    "example.com/kev": ("CVE-2099-0002", "Unknown", None),
    "example.com/ransom": ("CVE-2099-0003", "Known", 0.02),
    "example.com/epsshigh": ("CVE-2099-0004", None, 0.61),
    "example.com/epssmid": ("CVE-2099-0005", None, 0.2),
    "example.com/epsslow": ("CVE-2099-0006", None, 0.004),
}
SCORED_KEV = ("example.com/scored", "CVE-2099-0007")  # CVSS 5.3 (medium), listed in KEV


def _record(index: int, module: str, cve: str, severity: list[dict[str, str]] | None = None) -> str:
    record: dict[str, object] = {
        "id": f"GO-2099-{index:04d}",
        "modified": "0001-01-01T00:00:00Z",
        "published": "0001-01-01T00:00:00Z",
        "aliases": [cve],
        "summary": f"A flaw in {module}",
        "affected": [
            {
                "package": {"name": module, "ecosystem": "Go"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}],
            }
        ],
    }
    if severity:
        record["severity"] = severity
    return json.dumps(record)


@pytest.fixture()
def kb(store: Store, tmp_path: Path) -> Store:
    osv = tmp_path / "osv" / "Go"
    osv.mkdir(parents=True)
    kev: list[dict[str, str]] = []
    epss = ["#model_version:v2025.03.14,score_date:2025-08-25T00:00:00Z", "cve,epss,percentile"]
    for index, (module, (cve, ransomware, probability)) in enumerate(CASES.items(), start=1):
        (osv / f"GO-2099-{index:04d}.json").write_text(_record(index, module, cve), encoding="utf-8")
        if ransomware is not None:
            kev.append({"cveID": cve, "dateAdded": "2025-01-01", "knownRansomwareCampaignUse": ransomware})
        if probability is not None:
            epss.append(f"{cve},{probability},0.5")
    module, cve = SCORED_KEV
    vector = [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"}]
    (osv / "GO-2099-0100.json").write_text(_record(100, module, cve, vector), encoding="utf-8")
    kev.append({"cveID": cve, "dateAdded": "2025-01-01", "knownRansomwareCampaignUse": "Unknown"})
    catalogue = {"catalogVersion": "2025.08.25", "count": len(kev), "vulnerabilities": kev}
    (tmp_path / "kev.json").write_text(json.dumps(catalogue), encoding="utf-8")
    (tmp_path / "epss.csv").write_text("\n".join(epss) + "\n", encoding="utf-8")
    import_path(store, osv)
    import_path(store, tmp_path / "kev.json")
    import_path(store, tmp_path / "epss.csv")
    return store


def _by_module(findings: list[Finding]) -> dict[str, Finding]:
    return {f.component.name: f for f in findings if f.component is not None}


def test_unscored_advisories_are_marked_and_ranked_by_kev_then_epss(kb: Store) -> None:
    components = [comp(module, "1.0.0", "Go") for module in [*CASES, SCORED_KEV[0]]]
    found = _by_module(VulnMatcher(kb).match(components, ASSET))
    got = {m: (f.severity, f.data["severity_source"], f.data.get("unscored")) for m, f in found.items()}
    assert got == {
        "example.com/plain": (Severity.MEDIUM, "unknown", True),  # the stated default
        "example.com/kev": (Severity.HIGH, "kev", True),
        "example.com/ransom": (Severity.CRITICAL, "kev", True),  # KEV wins over a low EPSS
        "example.com/epsshigh": (Severity.HIGH, "epss", True),  # >= 50 %
        "example.com/epssmid": (Severity.MEDIUM, "epss", True),  # >= 10 %
        "example.com/epsslow": (Severity.LOW, "epss", True),
        # A published score stays the finding's: KEV raises it to high, but it is not unscored.
        "example.com/scored": (Severity.HIGH, "kev", None),
    }
    assert all(f.score is None for m, f in found.items() if m != "example.com/scored")
    assert found["example.com/scored"].score == 5.3


def test_scored_findings_rank_before_unscored_ones_of_the_same_severity() -> None:
    def medium(rule_id: str, **data: object) -> Finding:
        return Finding(FindingKind.VULNERABILITY, rule_id, rule_id, Severity.MEDIUM, ASSET, data=dict(data))

    unscored = medium("GO-2099-0001", unscored=True, severity_source="unknown")
    scored = medium("GO-2099-0002", severity_source="cvss")
    assert [f.rule_id for f in sort_findings([unscored, scored])] == ["GO-2099-0002", "GO-2099-0001"]


def test_the_note_says_how_many_are_unscored_and_how_they_were_ranked(kb: Store) -> None:
    components = [comp(module, "1.0.0", "Go") for module in [*CASES, SCORED_KEV[0]]]
    findings = VulnMatcher(kb).match(components, ASSET)
    (note,) = unscored_note(findings)
    assert note == (
        "vulnerability: 6 of 7 findings rest on advisories that publish no severity, shown as unscored: "
        "ranked by KEV (2) and EPSS (3) where known, else medium by default (1)"
    )
    assert unscored_note([f for f in findings if not f.data.get("unscored")]) == []
