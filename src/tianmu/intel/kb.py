"""The threat-intelligence knowledge base: import feeds (offline first), pull TAXII, keep ATT&CK, status.

`import_feed` recognises what it is given by content (the file name only where the format itself goes
by names, as LOKI's IOC files do):

| input                                              | format         | source name(s)                     |
| -------------------------------------------------- | -------------- | ---------------------------------- |
| ATT&CK enterprise bundle (`.json`/`.json.gz`)      | attack         | `attack:enterprise`                |
| STIX 2.x bundle (`.json`)                          | stix           | `stix:<file stem>`                 |
| MISP feed folder (`manifest.json` + events)        | misp           | `misp:<folder>`                    |
| maltrail `trails/static` folder or trail file      | maltrail       | `maltrail:<part>`                  |
| signature-base `iocs/` folder or LOKI IOC file     | signature-base | `signature-base:<c2|hash>`         |
| `.csv`                                             | csv            | `csv:<file stem>`                  |
| anything else: one indicator per line              | list           | `list:<file stem>`                 |
| a folder of any of these                           | each child     | each child's                       |

`tianmu kb` gives this base a folder when its feeds are intel: no OSV record, no rule or signature
file, at least one file recognisably intel (STIX, ATT&CK, maltrail, LOKI) or a MISP/maltrail/LOKI
folder — so a folder holding a STIX bundle beside a plain indicator list is intel's, not an OSV folder.

Each source is a `kb_sources` row of kind `intel` (ATT&CK: `attack`) with its digest, so re-importing
unchanged data is recognised at once. A changed file is merged into its source by default (new and changed
indicators written, none removed: a partial copy never shrinks a source); with `--replace` it replaces its
source's indicators (see `tianmu.store.knowledge.ImportMode`). A TAXII collection is additive: each pull adds
what was added after the previous one. Indicators are stored one row per (source, type, value), duplicates
within a source merged; `lookup` merges every source of a value. After an import the matching index is rebuilt
(see `tianmu.intel.index`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tianmu.core.errors import KnowledgeBaseError
from tianmu.core.models import utcnow
from tianmu.intel import attack, lists, misp, stix
from tianmu.intel.index import INTEL_KIND, load_index
from tianmu.intel.models import FeedResult
from tianmu.intel.storage import store_feed
from tianmu.intel.taxii import pull_into
from tianmu.store.bulk import upsert_row
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportLimits, ImportMode, ImportReport, KbContext, file_digest
from tianmu.store.schema import kb_sources

__all__ = ["FORMATS", "IntelKnowledgeBase", "detect_format", "import_feed", "store_feed"]

FORMATS = ("attack", "stix", "misp", "maltrail", "signature-base", "csv", "list")
ATTACK_SOURCE = "attack:enterprise"
_SKIP_NAMES = frozenset(
    {"license", "license.txt", "readme", "readme.md", "readme.txt", "copying", "feeds.md"}
)


def _input_digest(path: Path) -> str:
    if path.is_file():
        return file_digest(path)
    sha = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        sha.update(f"{file.relative_to(path)}\t{file_digest(file)}\n".encode())
    return sha.hexdigest()


def detect_format(path: Path) -> str | None:
    """The feed format of a file or folder, or None for a folder of several feeds."""
    if path.is_dir():
        if misp.is_misp_feed(path):
            return "misp"
        if lists.is_signature_base(path):
            return "signature-base"
        if lists.is_maltrail(path):
            return "maltrail"
        return None
    if attack.is_attack_bundle(path):
        return "attack"
    if stix.is_stix_bundle(path):
        return "stix"
    if lists.is_signature_base(path):
        return "signature-base"
    if lists.is_maltrail(path):
        return "maltrail"
    if path.suffix.lower() == ".csv":
        return "csv"
    return "list"


def _read(
    path: Path,
    fmt: str,
    source: str | None,
    confidence: int | None,
    columns: dict[str, str] | None,
    kind: str | None,
    exact: bool,
    limits: ImportLimits,
) -> list[FeedResult]:
    if fmt == "stix":
        return [stix.read_stix_bundle(path, source, confidence or 50, limits)]
    if fmt == "misp":
        return [misp.read_misp_feed(path, source, confidence or 50, limits)]
    if fmt == "maltrail":
        results = lists.read_maltrail(path)
    elif fmt == "signature-base":
        results = lists.read_signature_base(path)
    elif fmt == "csv":
        results = [lists.read_csv(path, source or f"csv:{path.stem}", confidence or 50, columns, kind=kind)]
    elif fmt == "list":
        results = [
            lists.read_plain(path, source or f"list:{path.stem}", confidence or 50, kind=kind, exact=exact)
        ]
    else:
        raise KnowledgeBaseError(
            f"{path}: unknown intel format {fmt!r} (expected one of {', '.join(FORMATS)})"
        )
    for result in results:
        if source and len(results) == 1:
            result.source = source
        if confidence is not None and fmt in ("maltrail", "signature-base"):
            for entry in result.entries:
                entry.confidence = confidence
    return results


def import_feed(
    store: Store,
    path: Path,
    *,
    home: Path | None = None,
    fmt: str | None = None,
    source: str | None = None,
    confidence: int | None = None,
    columns: dict[str, str] | None = None,
    kind: str | None = None,
    exact: bool = False,
    progress: Any = None,
    rebuild_index: bool = True,
    mode: ImportMode = ImportMode.MERGE,
    limits: ImportLimits | None = None,
) -> list[ImportReport]:
    """Import one feed file or folder (see the module docstring); one report per source."""
    limits = limits or ImportLimits()
    if not path.exists():
        raise KnowledgeBaseError(f"{path}: no such file or directory")
    note = progress or (lambda _message: None)
    fmt = fmt or detect_format(path)
    reports: list[ImportReport] = []
    if fmt is None:
        for child in sorted(path.iterdir()):
            if (
                child.name.startswith(".")
                or child.name.lower() in _SKIP_NAMES
                or child.suffix.lower() == ".md"
            ):
                continue
            reports += import_feed(
                store,
                child,
                home=home,
                confidence=confidence,
                progress=progress,
                rebuild_index=False,
                mode=mode,
                limits=limits,
            )
    elif fmt == "attack":
        reports.append(_import_attack(store, path, note))
    else:
        digest = _input_digest(path)
        unchanged = _unchanged(store, path, digest, mode)
        if unchanged:
            note(f"{path.name}: unchanged")
            return unchanged
        note(f"{path.name}: reading {fmt}")
        for result in _read(path, fmt, source, confidence, columns, kind, exact, limits):
            note(f"{result.source}: storing {len(result.entries)} indicators")
            reports.append(
                store_feed(store, result, str(path), digest, additive=mode is ImportMode.MERGE, limits=limits)
            )
    if rebuild_index and any(r.kind == INTEL_KIND and r.status != "unchanged" for r in reports):
        note("building the intel index")
        load_index(store, home, rebuild=True)
    return reports


def _unchanged(store: Store, path: Path, digest: str, mode: ImportMode) -> list[ImportReport]:
    with store.connect() as conn:
        rows = conn.execute(
            select(kb_sources).where(kb_sources.c.kind == INTEL_KIND, kb_sources.c.origin == str(path))
        ).all()
    same = [r for r in rows if (r.details or {}).get("input_digest") == digest]
    if mode is not ImportMode.MERGE and any(int((r.details or {}).get("kept", 0)) for r in same):
        return []  # merged before: the same file, authoritative now, still removes the rest
    return [
        ImportReport(r.name, INTEL_KIND, r.origin, "unchanged", record_count=r.record_count, digest=r.digest)
        for r in same
    ]


def _import_attack(store: Store, path: Path, note: Any) -> ImportReport:
    digest = file_digest(path)
    with store.connect() as conn:
        row = conn.execute(select(kb_sources).where(kb_sources.c.name == ATTACK_SOURCE)).first()
    if row is not None and row.digest == digest:
        note("ATT&CK: unchanged")
        return ImportReport(
            ATTACK_SOURCE, "attack", str(path), "unchanged", record_count=row.record_count, digest=digest
        )
    note("ATT&CK: reading the enterprise bundle")
    data = attack.read_attack_bundle(path)
    attack.save_attack(store, data)
    with store.begin() as conn:
        upsert_row(
            conn,
            kb_sources,
            kb_sources.c.name,
            {
                "name": ATTACK_SOURCE,
                "kind": "attack",
                "origin": str(path),
                "digest": digest,
                "version": data.version,
                "record_count": len(data.techniques),
                "imported_at": utcnow(),
                "details": {"tactics": len(data.tactics), "errors": len(data.errors)},
            },
        )
    status = "imported" if row is None else "updated"
    return ImportReport(
        ATTACK_SOURCE,
        "attack",
        str(path),
        status,
        errors=data.errors,
        record_count=len(data.techniques),
        digest=digest,
    )


def _is_intel_file(path: Path) -> bool:
    """A file that is recognisably intel by its content (a plain list is not: anything is one)."""
    return (
        attack.is_attack_bundle(path)
        or stix.is_stix_bundle(path)
        or lists.is_maltrail(path)
        or lists.is_signature_base(path)
    )


_LIST_SUFFIXES = frozenset({".txt", ".csv", ".list", ".lst", ".ioc", ""})


def _is_intel_folder(path: Path) -> bool:
    """A folder of several feeds (a STIX bundle beside a plain list): every file a feed, one surely so."""
    files = [
        p
        for p in path.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and p.name.lower() not in _SKIP_NAMES
        and p.suffix.lower() not in (".md", ".license")
    ]
    sure = False
    for file in files:
        if _is_intel_file(file):
            sure = True
        elif file.suffix.lower() not in _LIST_SUFFIXES:
            return False  # an OSV record, a rule file, a signature database: another base's data
    return sure


class IntelKnowledgeBase:
    """Threat intelligence and ATT&CK as `tianmu kb` sees them (see `tianmu.store.knowledge`)."""

    name = "intel"
    bundle_folders: frozenset[str] = frozenset({"intel", "attack"})
    default_sources: tuple[str, ...] = ()

    def claims(self, path: Path) -> bool:
        try:
            if path.is_dir():
                return detect_format(path) is not None or _is_intel_folder(path)
            return _is_intel_file(path)
        except OSError:
            return False

    def import_path(self, ctx: KbContext, path: Path) -> list[ImportReport]:
        return import_feed(
            ctx.store, path, home=ctx.home, progress=ctx.progress, mode=ctx.import_mode, limits=ctx.limits
        )

    def handles_source(self, source: str) -> bool:
        return source.startswith("taxii:")

    def update(self, ctx: KbContext, sources: Sequence[str]) -> list[ImportReport]:
        """`taxii:<collection URL>`: pull what was added since the last pull (see `tianmu.intel.taxii`)."""
        reports: list[ImportReport] = []
        for source in sources:
            url = source.split(":", 1)[1]
            reports.append(pull_into(ctx.store, url, home=ctx.home, progress=ctx.progress))
        return reports
