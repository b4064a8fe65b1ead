"""Findings, components and locations as plain JSON types, the one rendering every floor shares.

Engines describing their own results (`discover --json`), the situation step's evidence bundles, the
API and every report format call these, so that a finding reads the same wherever it is shown. They
live on the ground floor because capabilities may not import `reports`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from tianmu.core.models import Component, Finding, FindingKind, Location, Unresolved

__all__ = [
    "VulnDetails",
    "component_to_dict",
    "finding_to_dict",
    "iso",
    "jsonable",
    "location_to_dict",
    "storable",
    "unresolved_to_dict",
    "vuln_details",
]

_FLATTENED = frozenset({"fixed_versions", "kev", "kev_details", "epss", "epss_percentile", "cvss_vector"})


def iso(moment: datetime | date | None) -> str | None:
    """ISO 8601 in UTC with a `Z`; a naive datetime is taken to be UTC already (Tianmu stores UTC)."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        return moment.isoformat()
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


_MAX_DEPTH = 64
"""Deeper than this, a value is cut to a marker: evidence is never that deep, a cycle or a bomb is."""


def jsonable(value: Any) -> Any:
    """Turn engine-supplied evidence/data into plain JSON types, so no renderer (and no JSON column)
    trips on a datetime, bytes or a NaN.

    Never raises, whatever it is given: bytes become hex, non-finite floats None (JSON has no NaN, and
    PostgreSQL's JSON refuses it), an object whose `str()` fails its type name, and a cycle or a
    structure nested deeper than 64 levels a `"<...>"` marker; dict keys become strings, and every
    string is `storable`.
    """
    return _jsonable(value, 0, set())


def storable(text: str) -> str:
    """`text` as every database and UTF-8 stream can hold it, readably and without loss of meaning.

    A NUL (which PostgreSQL's text refuses) becomes `\\x00`; the undecodable bytes of a file name
    (lone surrogates from `surrogateescape`, which UTF-8 cannot encode) become `\\xNN`. A hostile
    file name or log line must not make a whole job's results unstorable.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")  # the original bytes of a file name
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        text = raw.decode("utf-8", "backslashreplace")
    return text


def _jsonable(value: Any, depth: int, active: set[int]) -> Any:
    if isinstance(value, str):
        return storable(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return _jsonable(value.value, depth, active)
    if isinstance(value, datetime | date):
        return iso(value)
    if isinstance(value, Location):
        return {"path": storable(value.path), "line": value.line}
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if not isinstance(value, Mapping | set | frozenset | list | tuple):
        return _text(value)
    if depth >= _MAX_DEPTH or id(value) in active:
        return "<...>"
    active.add(id(value))
    try:
        if isinstance(value, Mapping):
            return {_text(key): _jsonable(item, depth + 1, active) for key, item in value.items()}
        items = sorted(value, key=_text) if isinstance(value, set | frozenset) else value
        return [_jsonable(item, depth + 1, active) for item in items]
    finally:
        active.discard(id(value))


def _text(value: Any) -> str:
    """`str(value)`, storable, or its type's name when its `__str__` fails (a hostile or broken object)."""
    if isinstance(value, str):
        return storable(value)
    try:
        return storable(str(value))
    except Exception:  # whatever a foreign __str__ raises, the answer is the same
        return f"<{type(value).__name__}>"


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


def location_to_dict(location: Location | None) -> dict[str, Any] | None:
    if location is None:
        return None
    return {"path": location.path, "line": location.line}


def component_to_dict(component: Component) -> dict[str, Any]:
    return {
        "purl": component.purl,
        "name": component.name,
        "version": component.version,
        "ecosystem": component.ecosystem,
        "location": location_to_dict(component.location),
        "direct": component.direct,
        "source_name": component.source_name,
        "distro_release": component.distro_release,
        "distro_package": component.distro_package,
    }


def unresolved_to_dict(item: Unresolved) -> dict[str, Any]:
    return {
        "name": item.name,
        "ecosystem": item.ecosystem,
        "requirement": item.requirement,
        "location": location_to_dict(item.location),
        "reason": item.reason,
    }


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    """One finding as plain JSON types.

    Every kind carries the common fields and `data`, the engine's kind-specific details; for a
    vulnerability the well-known details (`fixed_versions`, `kev`, `epss`...) are lifted out of
    `data` into fields of their own.
    """
    out: dict[str, Any] = {
        "kind": finding.kind.value,
        "id": finding.rule_id,
        "title": finding.title,
        "severity": finding.severity.value,
        "score": finding.score,
        "summary": finding.summary,
        "asset": {"name": finding.asset.name, "kind": finding.asset.kind.value},
        "component": component_to_dict(finding.component) if finding.component else None,
        "aliases": list(finding.aliases),
        "references": list(finding.references),
        "techniques": list(finding.techniques),
        "evidence": jsonable(finding.evidence),
        "fingerprint": finding.fingerprint,
        "status": finding.status.value,
        "first_seen": iso(finding.first_seen),
        "last_seen": iso(finding.last_seen),
    }
    if finding.kind is FindingKind.VULNERABILITY:
        details = vuln_details(finding)
        out.update(
            {
                "fixed_versions": list(details.fixed_versions),
                "kev": details.kev,
                "kev_details": details.kev_details,
                "epss": details.epss,
                "epss_percentile": details.epss_percentile,
                "cvss_vector": details.cvss_vector,
            }
        )
        # Whatever else the matcher recorded (how it matched, publication date...) stays available.
        rest = {k: v for k, v in finding.data.items() if k not in _FLATTENED}
        out["data"] = jsonable(rest)
    else:
        # Each engine's headline details (a detection's `rule`, `event`, `fields`; a malware hit's
        # `file`, `matches`) are documented fields of that kind, so they are lifted to the top level
        # too — without ever shadowing a common field.
        data = jsonable(finding.data)
        for key, value in data.items():
            out.setdefault(key, value)
        out["data"] = data
    return out
