"""Helpers every report format shares: advisory links, timestamps, vulnerability details, counts.

Kept in one place so that the JSON, SARIF, CycloneDX and HTML renderings never disagree on what an
advisory id links to, how a time is written or how many KEV-listed findings there are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tianmu.core.models import Finding, FindingKind, Location, Severity
from tianmu.core.serialize import VulnDetails, iso, jsonable, vuln_details
from tianmu.situation.risk import is_unscored

__all__ = [
    "VulnDetails",
    "advisory_url",
    "finding_location",
    "is_kev",
    "is_unscored",
    "iso",
    "jsonable",
    "kev_count",
    "severity_counts",
    "severity_label",
    "unscored_counts",
    "unscored_summary",
    "vuln_details",
]


# Prefixes of ids that osv.dev serves under /vulnerability/<id>: the OSV ecosystem databases and the
# distribution feeds it mirrors. A CVE goes to NVD instead, because that is the record of reference.
_OSV_PREFIXES = frozenset(
    {
        "GHSA", "PYSEC", "GO", "RUSTSEC", "OSV", "GSD", "MAL", "BIT", "CURL", "PSF", "HSEC", "RSEC",
        "CGA", "DLA", "DSA", "DTSA", "DEBIAN", "UBUNTU", "USN", "ALSA", "ALBA", "ALEA", "ALPINE",
        "RLSA", "RXSA", "RHSA", "RHBA", "RHEA", "SUSE", "OPENSUSE", "MGASA", "LBSEC", "ELA",
        "UVI", "OESA", "ROOT", "ECHO", "MINI", "V8", "DRUPAL",
    }
)  # fmt: skip
_ID_RE = re.compile(r"^(?P<prefix>[A-Za-z][A-Za-z0-9]*)-[A-Za-z0-9][\w.:-]*$")
_CVE_RE = re.compile(r"^CVE-\d{4}-\d{4,}$", re.IGNORECASE)


def advisory_url(advisory_id: str) -> str | None:
    """The public page of an advisory: NVD for CVEs, osv.dev for OSV-style ids, None if unknown."""
    ident = advisory_id.strip()
    if _CVE_RE.match(ident):
        return f"https://nvd.nist.gov/vuln/detail/{ident.upper()}"
    match = _ID_RE.match(ident)
    if match and match.group("prefix").upper() in _OSV_PREFIXES:
        return f"https://osv.dev/vulnerability/{ident}"
    return None


def finding_location(finding: Finding) -> Location | None:
    """Where a finding points: its component's file, else a location its engine put in the evidence.

    Engines other than the vulnerability matcher have no component; a malware or detection engine
    records `location` (a Location) or `path` (and `line`) in the evidence instead.
    """
    if finding.component is not None and finding.component.location is not None:
        return finding.component.location
    evidence = finding.evidence
    raw = evidence.get("location")
    if isinstance(raw, Location):
        return raw
    path = evidence.get("path")
    if isinstance(path, str) and path:
        line = evidence.get("line")
        valid = isinstance(line, int) and not isinstance(line, bool) and line > 0
        return Location(path, line if valid else None)
    return None


def is_kev(finding: Finding) -> bool:
    return finding.kind is FindingKind.VULNERABILITY and bool(finding.data.get("kev", False))


def kev_count(findings: Iterable[Finding]) -> int:
    return sum(1 for finding in findings if is_kev(finding))


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Every severity present as a key, most severe first, so consumers never meet a missing key."""
    counts = {severity.value: 0 for severity in Severity}
    for finding in findings:
        counts[finding.severity.value] += 1
    return counts


def severity_label(finding: Finding) -> str:
    """The severity as a person should read it: `medium (unscored)` when no advisory published one."""
    return f"{finding.severity.value} (unscored)" if is_unscored(finding) else finding.severity.value


def unscored_counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Unscored findings per severity they were ranked at (severities with none left out)."""
    counts: dict[str, int] = {}
    for finding in findings:
        if is_unscored(finding):
            counts[finding.severity.value] = counts.get(finding.severity.value, 0) + 1
    return counts


def unscored_summary(findings: Iterable[Finding]) -> str | None:
    """One sentence for a summary: how many advisories publish no severity and how they were ranked."""
    unscored = [f for f in findings if is_unscored(f)]
    if not unscored:
        return None
    by_kev = sum(1 for f in unscored if f.data.get("severity_source") == "kev")
    by_epss = sum(1 for f in unscored if f.data.get("severity_source") == "epss")
    count = len(unscored)
    return (
        f"{count} finding{'s' if count != 1 else ''} rest on advisories that publish no severity "
        f"(unscored): ranked by KEV ({by_kev}) and EPSS ({by_epss}) where known, "
        f"else medium ({count - by_kev - by_epss})"
    )
