"""What every knowledge base has in common: import reports, status rows, and the interface.

Tianmu has several knowledge bases (vulnerability advisories, virus signatures, detection rules,
threat intelligence). Each capability package implements `KnowledgeBase` in its `kb.py`; the registry
in `tianmu.road.knowledge` lists them, and `tianmu kb import|update|status` goes through it, so a user has
one place to see which data every verdict rests on. Every source is a row of the `kb_sources` table
(name, kind, origin, digest, version, record count, import date), whatever the capability.

Hostile input. Every importer reads through the same limits (`ImportLimits`, carried by `KbContext`):
a record or rule file over `max_record_bytes` is refused, a JSON document over `max_document_bytes` or
nested deeper than `max_depth` is refused (`load_json` checks the depth before decoding, so a deeply
nested file is a located error, never a RecursionError), a text field over `max_field_chars` is cut.
Each limit hit is one entry of the import report's `errors`, naming file, record and limit. The CLI
reads overrides from the environment (`ImportLimits.from_environment`: `TIANMU_KB_MAX_DEPTH=32`...).

Shrinking a source. One rule for every base (`removal_refusal`): `tianmu kb import` *merges* by
default — records in the new data are added or updated, none is removed, so a partial file (a demo
subset) can never shrink a full source; `--replace` makes the import authoritative (records missing
from it are removed). `tianmu kb update` downloads an official full copy, which is authoritative, but
one that would remove more than `max_removed_fraction` of a source's records is refused for that source
(status `refused`, nothing imported, the report saying records now and after) unless `--replace`: a
truncated download must not empty the base.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from tianmu.core.errors import ConfigError
from tianmu.store.database import Store
from tianmu.store.schema import kb_sources

__all__ = [
    "ImportLimits",
    "ImportMode",
    "ImportReport",
    "KbContext",
    "KbStatus",
    "KnowledgeBase",
    "LimitError",
    "Progress",
    "cut_field",
    "file_digest",
    "json_depth_exceeds",
    "kb_status",
    "kept_note",
    "load_json",
    "read_limited",
    "removal_refusal",
]

Progress = Callable[[str], None]
MiB = 1 << 20


class LimitError(ValueError):
    """An input over one of the `ImportLimits`; the message names the limit."""


@dataclass(frozen=True, slots=True)
class ImportLimits:
    """Bounds on what one import reads; each limit hit is reported, never a crash."""

    max_record_bytes: int = 16 * MiB
    """One record (an OSV record file or zip member, a MISP event, a rule file): larger ones are refused."""
    max_document_bytes: int = 1024 * MiB
    """A feed that is one JSON document (KEV, NVD, a STIX bundle): larger ones are refused."""
    max_field_chars: int = 1 * MiB
    """A text field (summary, details, description): longer ones are cut, and the cut reported."""
    max_depth: int = 64
    """JSON nesting depth; real feeds stay under 20, Python's decoder fails near 1000."""
    max_line_bytes: int = 1 * MiB
    """One line of a line-oriented feed (EPSS CSV): longer lines are reported and skipped."""
    max_removed_fraction: float = 0.5
    """An authoritative update that would remove more than this share of a source is refused."""

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ImportLimits:
        """Defaults overridden by `TIANMU_KB_<FIELD>` (`TIANMU_KB_MAX_RECORD_BYTES=1048576`...).

        Read once at the edge (the CLI); a value that is not a positive number is a `ConfigError`.
        """
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            text = env.get(f"TIANMU_KB_{name.upper()}")
            if text is None:
                continue
            kind = float if name == "max_removed_fraction" else int
            try:
                value = kind(text)
            except ValueError:
                value = 0
            if not value > 0:
                raise ConfigError(f"TIANMU_KB_{name.upper()}={text!r}: expected a positive number")
            values[name] = value
        return cls(**values)


class ImportMode(StrEnum):
    """What an import may remove from a source it already holds (see the module docstring)."""

    MERGE = "merge"
    """`kb import` (default): add and update, never remove."""
    REPLACE = "replace"
    """`--replace`: authoritative, records missing from the import are removed."""
    OFFICIAL = "official"
    """`kb update`: authoritative, but refused when it would remove most of the source."""


def removal_refusal(source: str, mode: ImportMode, now: int, after: int, limits: ImportLimits) -> str | None:
    """Why an import that leaves `after` of a source's `now` records must not go ahead, or None.

    Only an official update can be refused: a merge removes nothing, `--replace` is the user's word.
    """
    if mode is not ImportMode.OFFICIAL or now == 0 or after >= now:
        return None
    removed = now - after
    if removed <= now * limits.max_removed_fraction:
        return None
    return (
        f"{source}: refused: this copy would remove {removed} of its {now} records "
        f"(records now {now}, after {after}; more than {limits.max_removed_fraction:.0%}); "
        "nothing was imported for it — pass --replace to make it authoritative"
    )


def kept_note(source: str, mode: ImportMode, kept: int) -> list[str]:
    """The report's line when a merge kept stored records the import did not hold (nothing for others)."""
    if mode is not ImportMode.MERGE or kept <= 0:
        return []
    return [
        f"{source}: merged: {kept} stored record(s) not in this import were kept (--replace removes them)"
    ]


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_exceeds(blob: bytes, limit: int) -> bool:
    """True when the JSON text nests arrays/objects deeper than `limit` (checked without recursion).

    Strings are blanked first (a `[` inside one does not count); then innermost `[]`/`{}` pairs are
    removed pass after pass by one C-speed `re.sub`: what is left after `limit` passes is deeper.
    """
    brackets = _JSON_STRING.sub(b"", blob).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        # One regex pass removes one level (two `replace` calls could remove two: `{[]}`).
        shorter = _INNERMOST.sub(b"", brackets)
        if len(shorter) == len(brackets):
            return False  # unbalanced: the decoder reports it with its line
        brackets = shorter
    return bool(brackets)


def load_json(blob: bytes | str, limits: ImportLimits) -> Any:
    """Decode JSON within the depth limit; raises `LimitError` or `json.JSONDecodeError`."""
    data = blob.encode() if isinstance(blob, str) else blob
    if json_depth_exceeds(data, limits.max_depth):
        raise LimitError(f"JSON nested deeper than {limits.max_depth} levels (limit max_depth)")
    try:
        return json.loads(data)
    except RecursionError as exc:  # a backstop: the depth check above should have caught it
        raise LimitError(f"JSON nested too deeply (limit max_depth {limits.max_depth})") from exc


def read_limited(path: Path, limit: int, what: str = "max_record_bytes") -> bytes:
    """The bytes of a file of at most `limit` bytes; larger ones raise `LimitError` before being read."""
    size = path.stat().st_size
    if size > limit:
        raise LimitError(f"{size} bytes, over the limit of {limit} ({what})")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while we looked
        raise LimitError(f"over the limit of {limit} bytes ({what})")
    return data


def cut_field(value: str, limits: ImportLimits, where: str, errors: list[str]) -> str:
    """`value` cut to `max_field_chars`, the cut reported in `errors`."""
    if len(value) <= limits.max_field_chars:
        return value
    errors.append(f"{where}: {len(value)} characters cut to {limits.max_field_chars} (limit max_field_chars)")
    return value[: limits.max_field_chars]


@dataclass(slots=True)
class ImportReport:
    source: str
    kind: str
    origin: str
    status: str
    """`imported` (new source), `updated`, `unchanged`; `failed` only from `update()` (download error);
    `refused` when it would remove most of the source (`removal_refusal`); `skipped`: nothing usable."""
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
    limits: ImportLimits = field(default_factory=ImportLimits)
    replace: bool = False
    """`--replace`: the import is authoritative for its sources (see the module docstring)."""

    @property
    def import_mode(self) -> ImportMode:
        return ImportMode.REPLACE if self.replace else ImportMode.MERGE

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


def file_digest(path: Path) -> str:
    """SHA-256 of an import source, read in 1 MiB blocks: the digest every base records for a file."""
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
