"""What every knowledge base has in common: import reports, status rows, and the interface.

Tianmu has several knowledge bases (vulnerability advisories, virus signatures, detection rules,
threat intelligence). Each capability package implements `KnowledgeBase` in its `kb.py`; the registry
in `tianmu.road.knowledge` lists them, and `tianmu kb import|update|status` goes through it, so a user has
one place to see which data every verdict rests on. Every source is a row of the `kb_sources` table
(name, kind, origin, digest, version, record count, import date), whatever the capability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from tianmu.store.database import Store
from tianmu.store.schema import kb_sources

__all__ = ["ImportReport", "KbContext", "KbStatus", "KnowledgeBase", "Progress", "kb_status"]

Progress = Callable[[str], None]


@dataclass(slots=True)
class ImportReport:
    source: str
    kind: str
    origin: str
    status: str
    """`imported` (new source), `updated`, `unchanged`; `failed` only from `update()` (download error)."""
    added: int = 0
    updated: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    record_count: int = 0
    digest: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class KbStatus:
    name: str
    kind: str
    origin: str
    digest: str
    version: str | None
    record_count: int
    imported_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the time as ISO 8601), for reports and the API."""
        return {**asdict(self), "imported_at": self.imported_at.isoformat()}


@dataclass(frozen=True, slots=True)
class KbContext:
    """What an import needs: the store for rows, the data directory for files (compiled rule caches)."""

    store: Store
    home: Path
    progress: Progress | None = None

    def note(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


class KnowledgeBase(Protocol):
    """One capability's knowledge base, as `tianmu kb` sees it."""

    name: str
    """Registry key and the word users see: `vulns`, `malware`, `detect`, `intel`."""
    bundle_folders: frozenset[str]
    """Child folder names this base takes in a bundle folder (`demo/kb/osv`, `demo/kb/yara`...)."""
    default_sources: tuple[str, ...]
    """Source names `tianmu kb update` fetches when none are named (empty: nothing online)."""

    def claims(self, path: Path) -> bool:
        """True when `path` (a file or folder) is this base's data, judged from its content."""
        ...

    def import_path(self, ctx: KbContext, path: Path) -> list[ImportReport]:
        """Import one file or folder; malformed entries go into the reports' `errors`, never raise."""
        ...

    def handles_source(self, source: str) -> bool:
        """True when `tianmu kb update --source NAME` is this base's to fetch."""
        ...

    def update(self, ctx: KbContext, sources: Sequence[str]) -> list[ImportReport]:
        """Download the named sources from their official locations and import them."""
        ...


def kb_status(store: Store) -> list[KbStatus]:
    """One row per imported source of any base, by name: which data every verdict rests on."""
    with store.connect() as conn:
        rows = conn.execute(select(kb_sources).order_by(kb_sources.c.name)).all()
    return [
        KbStatus(r.name, r.kind, r.origin, r.digest, r.version, int(r.record_count), r.imported_at)
        for r in rows
    ]
