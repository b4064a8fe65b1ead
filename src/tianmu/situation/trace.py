"""Attack tracing: everything connected to one IP, user, file hash or host, as a time-ordered story.

The story is made of
- findings whose evidence names the entity (`evidence.entities`, a file's `sha256`), or that sit on the
  asset of that name;
- incidents that involve it (with their stage and status);
- assets of that name (what we know about the machine: kind, criticality, tags);
- log events (from files the caller names, read with `tianmu.detect`) with a field equal to the entity.

Events are not stored by Tianmu, only the findings made from them (each keeps its raw record); naming
the log files again lets a trace show the surrounding, unremarkable events too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, or_, select

from tianmu.core.errors import InputError
from tianmu.core.models import (
    Event,
    Finding,
    Incident,
)
from tianmu.store.database import Store
from tianmu.store.repository import finding_from_row
from tianmu.store.schema import assets, findings

from .repository import load_assets, load_incidents
from .timeline import finding_time

__all__ = ["TraceItem", "TraceStory", "entity_types", "trace"]

TRACE_TYPES = ("ip", "user", "hash", "host")
_SOURCE_ORDER = {"asset": 0, "incident": 1, "finding": 2, "event": 3}
_HEX = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{40}$|^[0-9a-f]{64}$")


def entity_types(value: str) -> tuple[str, ...]:
    """What a bare value can be: an IP, a hash, else a user or a host name (both are searched)."""
    text = value.strip().lower()
    try:
        ipaddress.ip_address(text)
        return ("ip",)
    except ValueError:
        pass
    if _HEX.match(text):
        return ("hash",)
    return ("user", "host")


@dataclass(frozen=True, slots=True)
class TraceItem:
    time: datetime | None
    source: str
    """finding, event, incident or asset."""
    title: str
    severity: str | None = None
    where: str | None = None
    """`path:line` (or record) of the evidence."""
    ref: str | None = None
    """Fingerprint, incident id or asset name."""
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat() if self.time else None,
            "source": self.source,
            "title": self.title,
            "severity": self.severity,
            "where": self.where,
            "ref": self.ref,
            "detail": self.detail,
        }


@dataclass(slots=True)
class TraceStory:
    value: str
    types: tuple[str, ...]
    items: list[TraceItem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.source] = out.get(item.source, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity": self.value,
            "types": list(self.types),
            "counts": self.counts(),
            "items": [item.as_dict() for item in self.items],
        }


def _names(finding: Finding, types: tuple[str, ...], value: str) -> bool:
    entities = finding.evidence.get("entities")
    entities = entities if isinstance(entities, Mapping) else {}
    for kind in types:
        values = entities.get(kind)
        if isinstance(values, str):
            values = [values]
        if isinstance(values, list | tuple) and value in {str(v).lower() for v in values}:
            return True
    if "hash" in types and str(finding.evidence.get("sha256", "")).lower() == value:
        return True
    return "host" in types and finding.asset.name.lower() == value


def _where(finding: Finding) -> str | None:
    evidence = finding.evidence
    if not evidence.get("path"):
        return None
    if evidence.get("line"):
        return f"{evidence['path']}:{evidence['line']}"
    if evidence.get("record"):
        return f"{evidence['path']}#{evidence['record']}"
    return str(evidence["path"])


def _store_findings(store: Store, tenant: str, value: str, types: tuple[str, ...]) -> list[Finding]:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    # A coarse SQL pre-filter (the value appears in the evidence JSON, or is the asset's name), then the
    # exact test in Python: JSON containment queries differ between SQLite and PostgreSQL.
    condition: ColumnElement[bool] = cast(findings.c.evidence, Text).ilike(f"%{escaped}%", escape="\\")
    if "host" in types:
        condition = or_(condition, assets.c.name.ilike(escaped, escape="\\"))
    query = (
        select(findings, assets.c.name.label("asset_name"), assets.c.kind.label("asset_kind"))
        .join(assets, assets.c.id == findings.c.asset_id)
        .where(and_(findings.c.tenant == tenant, condition))
    )
    with store.connect() as conn:
        candidates = [finding_from_row(row) for row in conn.execute(query)]
    return [f for f in candidates if _names(f, types, value)]


def _event_matches(event: Event, value: str) -> bool:
    for field_value in event.fields.values():
        if isinstance(field_value, str | int) and str(field_value).lower() == value:
            return True
        if isinstance(field_value, list) and value in {str(v).lower() for v in field_value}:
            return True
    return False


def trace(
    store: Store,
    tenant: str,
    value: str,
    *,
    types: Iterable[str] | None = None,
    events: Iterable[Event] = (),
) -> TraceStory:
    """The story of one entity (module docstring), oldest first; undated items (assets) come first."""
    text = value.strip().lower()
    if not text:
        raise InputError("an entity to trace is needed: an IP address, user name, file hash or host name")
    kinds = tuple(types) if types else entity_types(text)
    unknown = [k for k in kinds if k not in TRACE_TYPES]
    if unknown:
        raise InputError(f"unknown entity type(s) {', '.join(unknown)}; expected {', '.join(TRACE_TYPES)}")
    story = TraceStory(value.strip(), kinds)
    if "host" in kinds:
        for asset in load_assets(store, tenant):
            if asset.name.lower() == text:
                story.items.append(
                    TraceItem(
                        None,
                        "asset",
                        f"{asset.kind.value} {asset.name}",
                        ref=asset.name,
                        detail={"criticality": asset.criticality, "tags": list(asset.tags)},
                    )
                )
    matched = _store_findings(store, tenant, text, kinds)
    fingerprints = set()
    for finding in matched:
        fingerprints.add(finding.fingerprint)
        story.items.append(
            TraceItem(
                finding_time(finding),
                "finding",
                finding.title,
                finding.severity.value,
                _where(finding),
                finding.fingerprint,
                {
                    "kind": finding.kind.value,
                    "rule_id": finding.rule_id,
                    "asset": finding.asset.name,
                    "status": finding.status.value,
                },
            )
        )
    for incident in load_incidents(store, tenant):
        if _involves(incident, text, kinds, fingerprints):
            story.items.append(
                TraceItem(
                    _aware(incident.first_seen),
                    "incident",
                    incident.title,
                    incident.severity.value,
                    ref=incident.id,
                    detail={
                        "stage": incident.stage,
                        "status": incident.status.value,
                        "assignee": incident.assignee,
                        "last_seen": incident.last_seen.isoformat() if incident.last_seen else None,
                    },
                )
            )
    for event in events:
        if _event_matches(event, text):
            story.items.append(
                TraceItem(
                    event.timestamp,
                    "event",
                    event.raw[:300],
                    where=str(event.origin),
                    detail={"source_type": event.source_type},
                )
            )
    far = datetime.min.replace(tzinfo=UTC)
    story.items.sort(key=lambda i: (_aware(i.time) or far, _SOURCE_ORDER[i.source]))
    return story


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _involves(incident: Incident, value: str, kinds: tuple[str, ...], fingerprints: set[str]) -> bool:
    if fingerprints & set(incident.finding_fingerprints):
        return True
    for kind in kinds:
        if value in {v.lower() for v in incident.entities.get(kind, [])}:
            return True
    return "host" in kinds and value in {a.lower() for a in incident.assets}
