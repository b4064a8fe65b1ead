"""The website-check knowledge base: check templates imported with `tianmu kb import`.

Tianmu's own starter checks ship with the package (`websec/checks/`); an organisation's checks are
imported into the store (table `websec_checks`), so every machine of a deployment runs the same ones.
A folder of templates is one source, `websec:<folder>`, authoritative for its templates (a template
removed from the folder is removed from the store); a single file is its own additive source
`websec:file:<stem>`. An import whose digest is unchanged is skipped; malformed templates are reported
with file and line and the others imported. A stored template with a built-in check's id replaces it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from tianmu.core.errors import KnowledgeBaseError, ParseError
from tianmu.core.models import utcnow
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportReport, KbContext
from tianmu.store.schema import kb_sources, websec_checks
from tianmu.websec.templates import CheckTemplate, load_templates, looks_like_template, parse_template

__all__ = ["WebCheckKnowledgeBase", "import_checks", "stored_checks"]


def _template_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in (".yaml", ".yml") and p.is_file())


def import_checks(store: Store, path: Path) -> ImportReport:
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
            select(kb_sources.c.digest).where(kb_sources.c.name == source)
        ).scalar_one_or_none()
        if previous == digest:
            return ImportReport(
                source,
                "websec",
                str(path),
                "unchanged",
                errors=errors,
                record_count=len(templates),
                digest=digest,
            )
        stored = {r.id: r for r in conn.execute(select(websec_checks)).all()}
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
        if path.is_dir():
            gone = [i for i, r in stored.items() if r.source == source and i not in texts]
            if gone:
                conn.execute(websec_checks.delete().where(websec_checks.c.id.in_(gone)))
            removed = len(gone)
        source_row = {
            "name": source,
            "kind": "websec",
            "origin": str(path),
            "digest": digest,
            "version": None,
            "record_count": len(templates),
            "imported_at": now,
            "details": {"errors": len(errors)},
        }
        if previous is None:
            conn.execute(kb_sources.insert().values(**source_row))
        else:
            conn.execute(kb_sources.update().where(kb_sources.c.name == source).values(**source_row))
    status = "imported" if previous is None else "updated" if added or updated or removed else "unchanged"
    return ImportReport(
        source, "websec", str(path), status, added, updated, removed, errors, len(templates), digest
    )


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
        return [import_checks(ctx.store, path)]

    def handles_source(self, source: str) -> bool:
        return source.startswith("websec:")

    def update(self, ctx: KbContext, sources: Sequence[str]) -> list[ImportReport]:
        raise KnowledgeBaseError(
            "website checks have no online source: keep your templates in a folder and "
            "`tianmu kb import FOLDER` it"
        )
