"""The website-check knowledge base: check templates imported with `tianmu kb import`.

Tianmu's own starter checks ship with the package (`websec/checks/`); an organisation's checks are
imported into the store (table `websec_checks`), so every machine of a deployment runs the same ones.
A folder of templates is one source, `websec:<folder>`; a single file is its own source
`websec:file:<stem>`. Templates are keyed by id, and an import follows the rule of every base
(`tianmu.store.knowledge`): it merges by default (new and changed templates written, a stored one the
import lacks kept, and counted in the report), `--replace` makes it the whole source (the others of
that source removed), an official copy that would remove most of a source is refused. An import whose
digest is unchanged is skipped; malformed templates are reported with file and line and the others
imported. A stored template with a built-in check's id replaces it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from tianmu.core.errors import KnowledgeBaseError, ParseError
from tianmu.core.models import utcnow
from tianmu.store.database import Store
from tianmu.store.knowledge import (
    ImportLimits,
    ImportMode,
    ImportReport,
    KbContext,
    kept_note,
    removal_refusal,
)
from tianmu.store.schema import kb_sources, websec_checks
from tianmu.websec.templates import CheckTemplate, load_templates, looks_like_template, parse_template

__all__ = ["WebCheckKnowledgeBase", "import_checks", "stored_checks"]


def _template_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in (".yaml", ".yml") and p.is_file())


def import_checks(
    store: Store, path: Path, mode: ImportMode = ImportMode.MERGE, limits: ImportLimits | None = None
) -> ImportReport:
    files = _template_files(path)
    if not files:
        raise KnowledgeBaseError(f"{path}: no check template (*.yaml) found")
    templates, errors = load_templates(path)
    if not templates:
        detail = f": {errors[0]}" if errors else ""
        raise KnowledgeBaseError(f"{path}: no check template could be read{detail}")
    texts = {t.id: Path(t.source).read_text(encoding="utf-8") for t in templates}
    hashes = {i: hashlib.sha256(text.encode()).hexdigest() for i, text in texts.items()}
    digest = hashlib.sha256("\n".join(f"{i}:{h}" for i, h in sorted(hashes.items())).encode()).hexdigest()
    source = f"websec:file:{path.stem}" if path.is_file() else f"websec:{path.resolve().name}"
    now = utcnow()
    with store.begin() as conn:
        previous = conn.execute(
            select(kb_sources.c.digest, kb_sources.c.details, kb_sources.c.record_count).where(
                kb_sources.c.name == source
            )
        ).first()
        # After a merge that kept other templates, the same copy with --replace must still remove them.
        merged_before = previous is not None and int((previous.details or {}).get("kept", 0)) > 0
        if (
            previous is not None
            and previous.digest == digest
            and (mode is ImportMode.MERGE or not merged_before)
        ):
            return ImportReport(
                source,
                "websec",
                str(path),
                "unchanged",
                errors=errors,
                record_count=int(previous.record_count),
                digest=digest,
            )
        stored = {r.id: r for r in conn.execute(select(websec_checks)).all()}
        mine = {i for i, r in stored.items() if r.source == source}
        refusal = removal_refusal(source, mode, len(mine), len(mine & texts.keys()), limits or ImportLimits())
        if refusal is not None:
            gone = sorted(mine - texts.keys())
            more = f" and {len(gone) - 5} more" if len(gone) > 5 else ""
            return ImportReport(
                source,
                "websec",
                str(path),
                "refused",
                errors=[f"{refusal}; templates it would remove: {', '.join(gone[:5])}{more}", *errors],
                record_count=len(mine),
            )
        added = updated = removed = 0
        for check_id, text in texts.items():
            row = stored.get(check_id)
            values = {"source": source, "content_hash": hashes[check_id], "text": text, "imported_at": now}
            if row is None:
                conn.execute(websec_checks.insert().values(id=check_id, **values))
                added += 1
            elif row.content_hash != hashes[check_id] or row.source != source:
                conn.execute(websec_checks.update().where(websec_checks.c.id == check_id).values(**values))
                updated += 1
        missing = sorted(mine - texts.keys())
        if mode is not ImportMode.MERGE and missing:
            conn.execute(websec_checks.delete().where(websec_checks.c.id.in_(missing)))
            removed = len(missing)
        kept = len(missing) - removed
        count = len(texts) + kept
        source_row = {
            "name": source,
            "kind": "websec",
            "origin": str(path),
            "digest": digest,
            "version": None,
            "record_count": count,
            "imported_at": now,
            "details": {"errors": len(errors), "mode": str(mode), "kept": kept},
        }
        if previous is None:
            conn.execute(kb_sources.insert().values(**source_row))
        else:
            conn.execute(kb_sources.update().where(kb_sources.c.name == source).values(**source_row))
    status = "imported" if previous is None else "updated" if added or updated or removed else "unchanged"
    errors += kept_note(source, mode, kept)
    return ImportReport(source, "websec", str(path), status, added, updated, removed, errors, count, digest)


def stored_checks(store: Store) -> tuple[list[CheckTemplate], list[str]]:
    """Every imported template (parsed again: the format's checks apply to stored text too)."""
    templates: list[CheckTemplate] = []
    errors: list[str] = []
    with store.connect() as conn:
        rows = conn.execute(select(websec_checks).order_by(websec_checks.c.id)).all()
    for row in rows:
        try:
            templates.append(parse_template(row.text, f"{row.source}:{row.id}"))
        except ParseError as exc:  # valid when imported; a newer Tianmu may be stricter: skip, and say so
            errors.append(str(exc))
    return templates, errors


class WebCheckKnowledgeBase:
    """Website check templates, as `tianmu kb` sees them (see `tianmu.store.knowledge`)."""

    name = "websec"
    bundle_folders: frozenset[str] = frozenset({"websec", "web-checks"})
    default_sources: tuple[str, ...] = ()

    def claims(self, path: Path) -> bool:
        if path.is_file():
            return looks_like_template(path)
        if path.is_dir():
            files = _template_files(path)
            return bool(files) and all(looks_like_template(f) for f in files)
        return False

    def import_path(self, ctx: KbContext, path: Path) -> list[ImportReport]:
        return [import_checks(ctx.store, path, ctx.import_mode, ctx.limits)]

    def handles_source(self, source: str) -> bool:
        return source.startswith("websec:")

    def update(self, ctx: KbContext, sources: Sequence[str]) -> list[ImportReport]:
        raise KnowledgeBaseError(
            "website checks have no online source: keep your templates in a folder and "
            "`tianmu kb import FOLDER` it"
        )
