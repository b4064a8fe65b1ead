"""Writing OSV collections and records into the store, and the `kb_sources` row every vulnerability
source keeps (see `tianmu.vulns.kb` for what is imported and the source names).

Each record's `content_hash` decides what is new, changed or gone; what an import may remove from a
source it already holds is the import mode's to say (`tianmu.store.knowledge.ImportMode`): a merge
removes nothing and says how many stored records it kept, `--replace` removes what is missing, an
official update that would remove most of a source is refused (`removal_refusal`).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from tianmu.core.errors import InputError, KnowledgeBaseError
from tianmu.core.models import utcnow
from tianmu.store.bulk import delete_in, insert_rows, select_in, upsert_row
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportLimits, ImportMode, ImportReport, file_digest, removal_refusal
from tianmu.store.schema import advisories, advisory_aliases, affected_packages, kb_sources
from tianmu.vulns.datadate import data_date
from tianmu.vulns.osv import ParsedRecord, blob_hash, iter_blobs, parse_blob, parse_record

__all__ = ["count_rows", "file_digest", "import_osv", "kept_note", "save_source", "stored_digest"]

Progress = Callable[[str], None]


def stored_digest(conn: Connection, name: str, mode: ImportMode = ImportMode.MERGE) -> str | None:
    """The digest the source was last imported from; a merge that kept other records does not count
    for an authoritative import (the same file with `--replace` must still remove those records)."""
    row = conn.execute(
        select(kb_sources.c.digest, kb_sources.c.details).where(kb_sources.c.name == name)
    ).first()
    if row is None:
        return None
    if mode is not ImportMode.MERGE and int((row.details or {}).get("kept", 0)) > 0:
        return f"merged:{row.digest}"
    return str(row.digest)


def count_rows(conn: Connection, table: Any, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar() or 0)


def kept_note(source: str, mode: ImportMode, kept: int) -> list[str]:
    """Say so when a merge kept records the import did not hold (the source did not shrink)."""
    if mode is not ImportMode.MERGE or kept <= 0:
        return []
    return [
        f"{source}: merged: {kept} stored record(s) not in this import were kept (--replace removes them)"
    ]


def save_source(
    conn: Connection,
    name: str,
    kind: str,
    origin: str,
    digest: str,
    version: str | None,
    count: int,
    details: dict[str, Any],
) -> None:
    row = {
        "name": name,
        "kind": kind,
        "origin": origin,
        "digest": digest,
        "version": version,
        "record_count": count,
        "imported_at": utcnow(),
        "details": details,
    }
    upsert_row(conn, kb_sources, kb_sources.c.name, row)


def _label(path: Path) -> str:
    if path.is_dir():
        return path.resolve().name
    return path.resolve().parent.name if path.stem.lower() == "all" else path.stem


def _read_records(
    path: Path, note: Progress, limits: ImportLimits
) -> tuple[str, dict[str, ParsedRecord], list[str], set[str]]:
    """Parse every record: (digest, records by id, errors, ids guessed from the names of bad files)."""
    records: dict[str, ParsedRecord] = {}
    errors: list[str] = []
    unreadable: set[str] = set()
    hashes: list[str] = []
    for name, blob in iter_blobs(path, limits):
        if isinstance(blob, InputError):
            errors.append(str(blob))
            unreadable.add(Path(name).stem)
            hashes.append(blob_hash(str(blob).encode()))
            continue
        digest = blob_hash(blob)
        hashes.append(digest)
        try:
            items = parse_blob(name, blob, limits)
            for item in items:
                # A file holding several records: each gets its own hash so one edit updates one record.
                item_hash = digest if len(items) == 1 else blob_hash(repr(sorted(item.items())).encode())
                parsed = parse_record(item, name, item_hash, limits, errors)
                if parsed.id in records:
                    errors.append(f"{name}: duplicate id {parsed.id} (first copy kept)")
                    continue
                records[parsed.id] = parsed
        except InputError as exc:
            errors.append(str(exc))
            unreadable.add(Path(name).stem)
        if len(hashes) % 2000 == 0:
            note(f"read {len(hashes)} files")
    if path.is_dir():
        total = hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()
    else:
        total = file_digest(path)
    return total, records, errors, unreadable


def _osv_source_name(path: Path, records: dict[str, ParsedRecord]) -> str:
    if not path.is_dir() and not zipfile.is_zipfile(path):
        return f"osv:file:{path.stem}"
    # The ecosystem every record is about: osv.dev's PyPI zip also carries the npm entries of GHSA
    # records that affect both, but each of its records affects PyPI.
    sets = [r.ecosystems for r in records.values() if r.ecosystems]
    common = set.intersection(*sets) if sets else set()
    if len(common) == 1:
        return f"osv:{next(iter(common))}"
    return f"osv:{_label(path)}"


def import_osv(
    store: Store,
    path: Path,
    note: Progress,
    source: str | None = None,
    mode: ImportMode = ImportMode.MERGE,
    limits: ImportLimits | None = None,
) -> ImportReport:
    limits = limits or ImportLimits()
    origin = str(path)
    if not path.is_dir():
        digest = file_digest(path)
        with store.connect() as conn:
            row = conn.execute(
                select(kb_sources.c.name, kb_sources.c.record_count).where(
                    kb_sources.c.kind == "osv", kb_sources.c.digest == digest
                )
            ).first()
            if row is not None and stored_digest(conn, row.name, mode) != digest:
                row = None  # merged before: an authoritative import of the same file still removes
        if row is not None:
            note(f"{row.name}: unchanged")
            return ImportReport(
                row.name, "osv", origin, "unchanged", record_count=row.record_count, digest=digest
            )
    digest, records, errors, unreadable = _read_records(path, note, limits)
    if not records:
        detail = f": {errors[0]}" if errors else ""
        raise KnowledgeBaseError(f"{path}: no OSV record could be read ({len(errors)} errors){detail}")
    ecosystems = set().union(*(r.ecosystems for r in records.values()))
    if source is None:
        source = _osv_source_name(path, records)
    with store.begin() as conn:
        previous = stored_digest(conn, source, mode)
        if previous == digest:
            note(f"{source}: unchanged")
            return ImportReport(
                source, "osv", origin, "unchanged", errors=errors, record_count=len(records), digest=digest
            )
        owned = dict(
            conn.execute(
                select(advisories.c.id, advisories.c.content_hash).where(advisories.c.source == source)
            ).all()
        )
        foreign = {
            r.id: r.content_hash
            for r in select_in(
                conn,
                [advisories.c.id, advisories.c.content_hash],
                advisories.c.id,
                [i for i in records if i not in owned],
            )
        }
        new = [r for i, r in records.items() if i not in owned and i not in foreign]
        changed = [
            r
            for i, r in records.items()
            if (i in owned and owned[i] != r.content_hash) or (i in foreign and foreign[i] != r.content_hash)
        ]
        is_collection = not source.startswith("osv:file:")
        missing = [i for i in owned if i not in records and i not in unreadable] if is_collection else []
        refusal = removal_refusal(source, mode, len(owned), len(owned) - len(missing) + len(new), limits)
        if refusal is not None:
            return ImportReport(
                source,
                "osv",
                origin,
                "refused",
                errors=[refusal, *errors],
                record_count=len(owned),
                digest=digest,
            )
        removed = missing if mode is not ImportMode.MERGE else []
        note(f"{source}: {len(new)} new, {len(changed)} changed, {len(removed)} removed")
        gone = [r.id for r in changed] + removed
        delete_in(conn, affected_packages.c.advisory_id, gone)
        delete_in(conn, advisory_aliases.c.advisory_id, gone)
        delete_in(conn, advisories.c.id, gone)
        write = new + changed
        insert_rows(conn, advisories, [{**r.advisory, "source": source} for r in write])
        insert_rows(conn, affected_packages, [row for r in write for row in r.affected])
        insert_rows(
            conn, advisory_aliases, [{"alias": a, "advisory_id": r.id} for r in write for a in r.aliases]
        )
        version = data_date(records.values(), path)
        count = count_rows(conn, advisories, advisories.c.source == source)
        details = {
            "errors": len(errors),
            "ecosystems": sorted(ecosystems),
            "mode": str(mode),
            "kept": len(missing) - len(removed),
        }
        save_source(conn, source, "osv", origin, digest, version, count, details)
    status = "imported" if previous is None else "updated" if new or changed or removed else "unchanged"
    errors += kept_note(source, mode, len(missing) - len(removed))
    return ImportReport(
        source, "osv", origin, status, len(new), len(changed), len(removed), errors, count, digest
    )
