"""Helpers every report format shares: advisory links, timestamps, vulnerability details, counts.

Kept in one place so that the JSON, SARIF, CycloneDX and HTML renderings never disagree on what an
advisory id links to, how a time is written or how many KEV-listed findings there are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from tianmu.core.models import Finding, FindingKind, Location, Severity

__all__ = [
    "VulnDetails",
    "advisory_url",
    "finding_location",
    "is_kev",
    "iso",
    "jsonable",
    "kev_count",
    "severity_counts",
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


def iso(moment: datetime | date | None) -> str | None:
    """ISO 8601 in UTC with a `Z`; a naive datetime is taken to be UTC already (Tianmu stores UTC)."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        return moment.isoformat()
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """Turn engine-supplied evidence/data into plain JSON types, so no renderer trips on a datetime."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date):
        return iso(value)
    if isinstance(value, Location):
        return {"path": value.path, "line": value.line}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return [jsonable(item) for item in sorted(value, key=str)]
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


@dataclass(frozen=True, slots=True)
class VulnDetails:
    """The vulnerability-specific part of `Finding.data`, read defensively (engines may omit keys)."""

    fixed_versions: tuple[str, ...]
    kev: bool
    kev_details: dict[str, Any] | None
    epss: float | None
    epss_percentile: float | None
    cvss_vector: str | None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def vuln_details(finding: Finding) -> VulnDetails:
    data = finding.data
    fixed = data.get("fixed_versions") or ()
    kev_details = data.get("kev_details")
    vector = data.get("cvss_vector")
    return VulnDetails(
        fixed_versions=tuple(str(v) for v in fixed),
        kev=bool(data.get("kev", False)),
        kev_details=dict(jsonable(kev_details)) if isinstance(kev_details, Mapping) else None,
        epss=_float_or_none(data.get("epss")),
        epss_percentile=_float_or_none(data.get("epss_percentile")),
        cvss_vector=str(vector) if vector else None,
    )


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
