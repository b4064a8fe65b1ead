"""Storing one intel source: its indicators (merged per type and value) and its STIX context objects.

Every way intel comes in ends here: a feed file imported by `tianmu.intel.kb`, a TAXII pull by
`tianmu.intel.taxii`. It is a module of its own so that both can call it without importing each other.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection, delete, select

from tianmu.core.models import utcnow
from tianmu.intel.index import INTEL_KIND
from tianmu.intel.models import FeedResult, IntelEntry, merge_entries
from tianmu.store.bulk import insert_rows, upsert_row
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportLimits, ImportReport
from tianmu.store.schema import intel_indicators, intel_objects, kb_sources

__all__ = ["MAX_VALUE", "store_feed"]

MAX_VALUE = 2048
"""Longer indicator values are skipped (and reported); an origin is cut to its last this many characters."""


def _entry_row(source: str, entry: IntelEntry) -> dict[str, Any]:
    return {
        "source": source,
        "type": entry.type,
        "value": entry.value,
        "exact": entry.exact,
        "confidence": max(0, min(100, entry.confidence)),
        "valid_from": entry.valid_from,
        "valid_until": entry.valid_until,
        "labels": entry.labels,
        "techniques": entry.techniques,
        "malware": entry.malware,
        "actors": entry.actors,
        "references": entry.references,
        "description": entry.description[:4000],
        "origin": entry.origin[-MAX_VALUE:],
    }


def _stored_entries(conn: Connection, source: str) -> list[IntelEntry]:
    rows = conn.execute(select(intel_indicators).where(intel_indicators.c.source == source)).all()
    return [
        IntelEntry(
            type=r.type,
            value=r.value,
            confidence=r.confidence,
            exact=r.exact,
            valid_from=r.valid_from,
            valid_until=r.valid_until,
            labels=list(r.labels),
            techniques=list(r.techniques),
            malware=list(r.malware),
            actors=list(r.actors),
            description=r.description,
            references=list(r.references),
            origin=r.origin,
        )
        for r in rows
    ]


def store_feed(
    store: Store,
    result: FeedResult,
    origin: str,
    input_digest: str,
    *,
    additive: bool = False,
    limits: ImportLimits | None = None,
) -> ImportReport:
    """Write one source's indicators and context objects; `additive` keeps what the source had before."""
    limits = limits or ImportLimits()
    errors = list(result.errors)
    entries = []
    for entry in result.entries:
        if len(entry.value) > MAX_VALUE:
            errors.append(f"{entry.origin}: indicator longer than {MAX_VALUE} characters, skipped")
        else:
            entries.append(entry)
    for obj in result.objects:
        # A context object is stored whole (JSON): one over the record limit is dropped, not stored.
        if len(str(obj)) > limits.max_record_bytes:
            errors.append(
                f"{origin}: {obj.get('id')}: context object over {limits.max_record_bytes} bytes, skipped"
            )
    result.objects = [o for o in result.objects if len(str(o)) <= limits.max_record_bytes]
    merged = merge_entries(entries)
    source = result.source
    with store.begin() as conn:
        previous = conn.execute(select(kb_sources.c.digest).where(kb_sources.c.name == source)).scalar()
        keys = select(intel_indicators.c.type, intel_indicators.c.value).where(
            intel_indicators.c.source == source
        )
        old_keys = {(kind, value) for kind, value in conn.execute(keys)}
        kept = len(old_keys - set(merged)) if additive else 0
        if kept and not source.startswith("taxii:"):
            # Say so, as every base does on a merge: the source did not shrink to this file.
            errors.append(
                f"{source}: merged: {kept} stored record(s) not in this import were kept "
                "(--replace removes them)"
            )
        if additive:
            for key, entry in merge_entries(_stored_entries(conn, source)).items():
                if key in merged:
                    entry.merge(merged[key])
                merged[key] = entry
        conn.execute(delete(intel_indicators).where(intel_indicators.c.source == source))
        batch: list[dict[str, Any]] = []
        for entry in merged.values():
            batch.append(_entry_row(source, entry))
            if len(batch) >= 5000:
                insert_rows(conn, intel_indicators, batch)
                batch = []
        insert_rows(conn, intel_indicators, batch)
        if not additive:
            conn.execute(delete(intel_objects).where(intel_objects.c.source == source))
        objects = {str(o["id"]): o for o in result.objects if o.get("id")}
        if additive and objects:
            conn.execute(
                delete(intel_objects).where(
                    intel_objects.c.source == source, intel_objects.c.id.in_(list(objects))
                )
            )
        insert_rows(
            conn,
            intel_objects,
            [
                {
                    "source": source,
                    "id": i,
                    "type": o["type"],
                    "name": str(o.get("name") or "")[:512] or None,
                    "data": o,
                }
                for i, o in objects.items()
            ],
        )
        new_keys = set(merged)
        content = hashlib.sha256(f"{input_digest}\t{source}".encode()).hexdigest()
        details = {
            "format": result.kind,
            "input_digest": input_digest,
            "errors": len(errors),
            "skipped": result.skipped,
            "objects": len(objects),
            "kept": kept,
        }
        upsert_row(
            conn,
            kb_sources,
            kb_sources.c.name,
            {
                "name": source,
                "kind": INTEL_KIND,
                "origin": origin,
                "digest": content,
                "version": result.version,
                "record_count": len(merged),
                "imported_at": utcnow(),
                "details": details,
            },
        )
    added = len(new_keys - old_keys)
    removed = len(old_keys - new_keys)
    status = "imported" if previous is None else "updated"
    return ImportReport(
        source,
        INTEL_KIND,
        origin,
        status,
        added,
        len(new_keys & old_keys),
        removed,
        errors,
        len(merged),
        content,
    )
