"""Indicator records as the matcher reports them: every source of an indicator merged into one.

Several feeds may list the same address: the record carries all their sources, labels, malware and
actors, the highest confidence among the still-valid ones, and a validity that still-valid sources
decide (one expired feed must not hide another's live entry). Records are loaded on demand and kept
for the job (`RecordCache`), a block of log lines' hits in a few queries at once (`prefetch`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from tianmu.intel.findings import aware
from tianmu.intel.models import IntelRecord
from tianmu.store.bulk import chunks
from tianmu.store.database import Store
from tianmu.store.schema import intel_indicators

__all__ = ["RecordCache"]


class RecordCache:
    """Merged records by (type, value), loaded on first use and kept for the matcher's lifetime."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store = store
        self.now = now
        self._known: dict[tuple[str, str], IntelRecord | None] = {}

    def record(self, kind: str, value: str, *, include_expired: bool = False) -> IntelRecord | None:
        """The merged record of an indicator; None when unknown (or, by default, expired everywhere)."""
        key = (kind, value)
        if key not in self._known:
            self._known[key] = self._load_record(kind, value)
        found = self._known[key]
        if found is None or include_expired:
            return found
        if found.expired(self.now) or (found.valid_from is not None and found.valid_from > self.now):
            return None
        return found

    def prefetch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Load the records of many indicators in a few queries (hits of a block of lines at once)."""
        wanted = {key for key in keys if key not in self._known}
        if not wanted:
            return
        rows_by_key: dict[tuple[str, str], list[Any]] = {key: [] for key in wanted}
        by_type: dict[str, list[str]] = {}
        for kind, value in wanted:
            by_type.setdefault(kind, []).append(value)
        with self.store.connect() as conn:
            for kind, values in by_type.items():
                # `type = ? AND value IN (...)`: the (type, value) index answers it, chunk by chunk.
                for part in chunks(sorted(values)):
                    query = select(intel_indicators).where(
                        intel_indicators.c.type == kind, intel_indicators.c.value.in_(part)
                    )
                    for row in conn.execute(query):
                        rows_by_key[(row.type, row.value)].append(row)
        for key, rows in rows_by_key.items():
            self._known[key] = self._merge_rows(key[0], key[1], sorted(rows, key=lambda r: r.source))

    def _load_record(self, kind: str, value: str) -> IntelRecord | None:
        query = select(intel_indicators).where(
            intel_indicators.c.type == kind, intel_indicators.c.value == value
        )
        with self.store.connect() as conn:
            rows = conn.execute(query.order_by(intel_indicators.c.source)).all()
        return self._merge_rows(kind, value, list(rows))

    def _merge_rows(self, kind: str, value: str, rows: list[Any]) -> IntelRecord | None:
        if not rows:
            return None
        # Still-valid sources decide validity: one expired feed must not hide another's live entry.
        live = [r for r in rows if not _expired(r.valid_until, self.now)] or rows

        def union(name: str) -> tuple[str, ...]:
            return tuple(dict.fromkeys(v for r in rows for v in (getattr(r, name) or [])))

        untils = [aware(r.valid_until) for r in live]
        froms = [aware(r.valid_from) for r in live]
        return IntelRecord(
            type=kind,
            value=value,
            sources=tuple(r.source for r in rows),
            confidence=max(r.confidence for r in live),
            exact=all(r.exact for r in rows),
            valid_from=None if any(f is None for f in froms) else min(f for f in froms if f),
            valid_until=None if any(u is None for u in untils) else max(u for u in untils if u),
            labels=union("labels"),
            techniques=union("techniques"),
            malware=union("malware"),
            actors=union("actors"),
            description=next((r.description for r in rows if r.description), ""),
            references=union("references"),
            origins=tuple(r.origin for r in rows if r.origin),
        )


def _expired(until: datetime | None, now: datetime) -> bool:
    moment = aware(until)
    return moment is not None and moment <= now
