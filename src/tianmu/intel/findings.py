"""From sightings to findings: one `intel` finding per (indicator, file), with the evidence conventions.

Severity follows the merged confidence; the evidence carries the path, line or record, time, entities,
the observed text and field, and `fingerprint_extra` = `<type>:<indicator>@<path>` (see
`tianmu.core.models.Finding`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tianmu.core.models import Asset, Finding, FindingKind, Severity
from tianmu.intel.fields import HASH_BY_LENGTH
from tianmu.intel.models import IntelRecord

__all__ = ["Hits", "Sighting", "aware", "parse_time", "severity_for"]

_ENTITY = {
    "ip": "ip",
    "cidr": "ip",
    "domain": "domain",
    "url": "url",
    "email": "user",
    "user-agent": "process",
    "filename": "file",
}


def severity_for(record: IntelRecord) -> Severity:
    """High from confidence 80, medium from 50, low from 25; scanner and "suspicious" lists stay low."""
    noisy = any(label in ("mass-scanner", "suspicious") for label in record.labels)
    if record.confidence >= 80 and not noisy:
        return Severity.HIGH
    if record.confidence >= 50 and not noisy:
        return Severity.MEDIUM
    return Severity.LOW if record.confidence >= 25 else Severity.INFO


@dataclass(frozen=True, slots=True)
class Sighting:
    """An indicator seen: its type and canonical value, the text observed, and the field it was in."""

    type: str
    indicator: str
    observed: str
    field: str = "text"
    line: int | None = None


@dataclass(slots=True)
class _Hit:
    record: IntelRecord
    sighting: Sighting
    path: str
    line: int | None
    record_no: int | None
    time: datetime | None
    excerpt: str
    entities: dict[str, list[str]] = field(default_factory=dict)
    count: int = 1
    last_line: int | None = None


def aware(moment: datetime | None) -> datetime | None:
    """A time with its zone: SQLite gives naive datetimes back, which Tianmu stores as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


class Hits:
    """Sightings grouped by (indicator, path): one finding each."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, str], _Hit] = {}

    def add(
        self,
        record: IntelRecord,
        sighting: Sighting,
        path: str,
        line: int | None,
        record_no: int | None,
        time: datetime | None,
        raw: str,
        entities: dict[str, list[str]],
    ) -> None:
        key = (record.type, record.value, path)
        known = self.by_key.get(key)
        if known is not None:
            known.count += 1
            known.last_line = line
            return
        self.by_key[key] = _Hit(record, sighting, path, line, record_no, time, raw[:500], entities)

    def findings(self, asset: Asset) -> Iterator[Finding]:
        for hit in self.by_key.values():
            yield _finding(hit, asset)


def _finding(hit: _Hit, asset: Asset) -> Finding:
    record, sighting = hit.record, hit.sighting
    entities = {k: list(v) for k, v in hit.entities.items()}
    entity = "hash" if record.type in HASH_BY_LENGTH.values() else _ENTITY.get(record.type, "domain")
    observed = sighting.observed
    if entity not in entities or observed not in entities[entity]:
        entities.setdefault(entity, []).append(observed)
    about = ", ".join(record.malware or record.actors) or ", ".join(record.sources)
    evidence: dict[str, Any] = {
        "path": hit.path,
        "entities": entities,
        "fingerprint_extra": f"{record.type}:{record.value}@{hit.path}",
        "indicator": {"type": record.type, "value": record.value},
        "observed": sighting.observed,
        "field": sighting.field,
        "sightings": hit.count,
    }
    if hit.line is not None:
        evidence["line"] = hit.line
    if hit.record_no is not None:
        evidence["record"] = hit.record_no
    if hit.time is not None:
        evidence["time"] = aware(hit.time).isoformat()  # type: ignore[union-attr]
    if hit.last_line is not None and hit.last_line != hit.line:
        evidence["last_line"] = hit.last_line
    if hit.excerpt:
        evidence["excerpt"] = hit.excerpt
    return Finding(
        kind=FindingKind.INTEL,
        rule_id=f"intel:{record.type}:{record.value}",
        title=f"Known-bad {record.type} {record.value} ({about})",
        severity=severity_for(record),
        asset=asset,
        score=round(record.confidence / 10, 1),
        summary=record.description or f"{record.value} is listed by {', '.join(record.sources)}.",
        evidence=evidence,
        references=record.references,
        techniques=record.techniques,
        data={
            "sources": list(record.sources),
            "confidence": record.confidence,
            "malware": list(record.malware),
            "actors": list(record.actors),
            "labels": list(record.labels),
            "valid_until": record.valid_until.isoformat() if record.valid_until else None,
            "origins": list(record.origins[:10]),
        },
    )
