"""A realistic assessment to render: real advisories, as the matcher and the KEV/EPSS import produce them.

A plain module (not conftest) so that tests can import the builders and constants by name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tianmu.core.models import (
    Assessment,
    Asset,
    AssetKind,
    Component,
    Finding,
    FindingKind,
    Location,
    Severity,
    Unresolved,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
ASSET = Asset(name="/srv/shop", kind=AssetKind.DIRECTORY, criticality=4, tags=("prod",))
STARTED = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)
FINISHED = datetime(2025, 3, 1, 9, 0, 7, 250000, tzinfo=UTC)

REQS = "requirements.txt"
DJANGO = Component("Django", "3.2.0", "PyPI", "pkg:pypi/django@3.2.0", Location(REQS, 3), direct=True)
JINJA = Component("Jinja2", "3.1.2", "PyPI", "pkg:pypi/jinja2@3.1.2", Location(REQS, 4), direct=True)
LOG4J = Component(
    "org.apache.logging.log4j:log4j-core",
    "2.14.1",
    "Maven",
    "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
    Location("legacy/pom.xml", 41),
    direct=True,
)
GO_STDLIB = Component("stdlib", "1.18.0", "Go", "pkg:golang/stdlib@1.18.0", Location("tools/go.mod", 3))


def _vuln(
    rule_id: str,
    title: str,
    component: Component,
    score: float,
    vector: str,
    fixed: list[str],
    aliases: tuple[str, ...],
    *,
    summary: str = "",
    kev: bool = False,
    kev_details: dict[str, object] | None = None,
    epss: float | None = None,
    epss_percentile: float | None = None,
) -> Finding:
    return Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id=rule_id,
        title=title,
        severity=Severity.from_cvss_score(score),
        asset=ASSET,
        score=score,
        summary=summary or title,
        component=component,
        aliases=aliases,
        references=(f"https://osv.dev/vulnerability/{rule_id}",) if not rule_id.startswith("CVE") else (),
        data={
            "fixed_versions": fixed,
            "kev": kev,
            "kev_details": kev_details,
            "epss": epss,
            "epss_percentile": epss_percentile,
            "cvss_vector": vector,
            "matched_by": "versions",
        },
        first_seen=STARTED,
        last_seen=STARTED,
    )


def build_findings() -> list[Finding]:
    """Sorted as the CLI sorts them: severity, then id."""
    log4shell = _vuln(
        "GHSA-jfh8-c2jp-5v3q",
        "Remote code injection in Log4j",
        LOG4J,
        10.0,
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
        ["2.15.0"],
        ("CVE-2021-44228",),
        summary="JNDI features used in configuration, log messages, and parameters do not protect against "
        "attacker controlled LDAP and other JNDI related endpoints.",
        kev=True,
        kev_details={"date_added": "2021-12-10", "ransomware": "Known", "due_date": "2021-12-24"},
        epss=0.94358,
        epss_percentile=0.99957,
    )
    sqli = _vuln(
        "PYSEC-2021-111",
        "Potential SQL injection via QuerySet.order_by()",
        DJANGO,
        9.8,
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        ["3.1.13", "3.2.5"],
        ("CVE-2021-35042", "GHSA-xpfp-f569-q3p2"),
        epss=0.00402,
        epss_percentile=0.7329,
    )
    http2 = _vuln(
        "GO-2022-0969",
        "Denial of service in net/http HTTP/2 server connections",
        GO_STDLIB,
        7.5,
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
        ["1.18.6", "1.19.1"],
        ("CVE-2022-27664", "GHSA-69cg-p879-7622"),
        epss=0.00287,
        epss_percentile=0.6911,
    )
    traversal = _vuln(
        "PYSEC-2021-98",
        "Potential directory traversal via admindocs",
        DJANGO,
        4.9,
        "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:N/A:N",
        ["2.2.24", "3.1.12", "3.2.4"],
        ("CVE-2021-33203", "GHSA-68w8-qjq3-2gfm"),
        epss=0.00134,
        epss_percentile=0.4876,
    )
    jinja = _vuln(
        "CVE-2024-22195",
        "Jinja vulnerable to HTML attribute injection when passing user input as keys to xmlattr filter",
        JINJA,
        5.4,
        "CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N",
        ["3.1.3"],
        ("GHSA-h5c8-rqwp-cp95", "PYSEC-2024-4"),
        epss=None,
    )
    eicar = Finding(
        kind=FindingKind.MALWARE,
        rule_id="EICAR-Test-File",
        title="EICAR anti-virus test file",
        severity=Severity.HIGH,
        asset=ASSET,
        summary="The file matches the EICAR test signature.",
        evidence={
            "path": "uploads/eicar.com",
            "sha256": "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
        },
        techniques=("T1204.002",),
        data={"engine": "hashes", "signature_db": "tianmu-demo"},
        first_seen=STARTED,
        last_seen=FINISHED,
    )
    return [log4shell, sqli, http2, eicar, jinja, traversal]


def build_assessment() -> Assessment:
    return Assessment(
        target="/srv/shop",
        asset=ASSET,
        started=STARTED,
        finished=FINISHED,
        components=[DJANGO, JINJA, LOG4J, GO_STDLIB],
        unresolved=[
            Unresolved(
                name="requests",
                ecosystem="PyPI",
                requirement="requests>=2.20",
                location=Location("requirements.txt", 5),
                reason="version range, not a pin",
            )
        ],
        findings=build_findings(),
        errors=["frontend/package-lock.json:1: not valid JSON: Expecting value"],
        files_read=4,
        knowledge_bases=[
            {
                "name": "osv",
                "kind": "vulnerability",
                "origin": "all.zip (osv.dev export)",
                "digest": "sha256:0f3a8c1d9e2b7a6f5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b",
                "version": "2025-03-01",
                "record_count": 221034,
                "imported_at": datetime(2025, 3, 1, 6, 12, tzinfo=UTC),
            },
            {
                "name": "kev",
                "kind": "vulnerability",
                "origin": "known_exploited_vulnerabilities.json",
                "digest": "sha256:9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
                "version": "2025.02.28",
                "record_count": 1283,
                "imported_at": datetime(2025, 3, 1, 6, 13, tzinfo=UTC),
            },
        ],
        engines=["vulns"],
    )
