"""The registry of knowledge bases and the `tianmu kb` operations over all of them.

Each capability contributes one `KnowledgeBase` (see `tianmu.store.knowledge`); `knowledge_bases()`
lists them in the order their `claims()` are asked, most specific first: the vulnerability base
accepts any JSON that could be an OSV record, so it is asked last.

A *bundle* is a folder of several knowledge bases, such as `demo/kb/`: its children named after a
base's `bundle_folders` (`osv/`, `kev/`, `yara/`, `intel/`...) go to that base; other children are
offered to every base's `claims()`, and documentation files (README.md...) are passed over. A child
that cannot be imported at all (nothing readable in it) becomes a `skipped` report with the reason;
the other children are still imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tianmu.core.errors import InputError, KnowledgeBaseError
from tianmu.detect.kb import SigmaKnowledgeBase
from tianmu.intel.kb import IntelKnowledgeBase
from tianmu.malware.kb import MalwareKnowledgeBase
from tianmu.store.knowledge import ImportReport, KbContext, KnowledgeBase, kb_status
from tianmu.vulns.kb import VulnKnowledgeBase
from tianmu.websec.kb import WebCheckKnowledgeBase

__all__ = ["default_sources", "import_any", "kb_status", "knowledge_bases", "update_sources"]

_DOCUMENTATION_SUFFIXES = frozenset({".md", ".rst", ".html", ".license"})
_DOCUMENTATION_NAMES = frozenset({"license", "copying", "notice", "authors", "readme"})


def knowledge_bases() -> list[KnowledgeBase]:
    """Every knowledge base, in the order they are asked to claim a path."""
    return [
        WebCheckKnowledgeBase(),
        SigmaKnowledgeBase(),
        MalwareKnowledgeBase(),
        IntelKnowledgeBase(),
        VulnKnowledgeBase(),
    ]


def _is_documentation(path: Path) -> bool:
    return path.is_file() and (
        path.suffix.lower() in _DOCUMENTATION_SUFFIXES or path.stem.lower() in _DOCUMENTATION_NAMES
    )


def _bundle_owner(child: Path, bases: Sequence[KnowledgeBase]) -> KnowledgeBase | None:
    name = child.name.lower()
    return next((kb for kb in bases if name in kb.bundle_folders), None)


def import_any(ctx: KbContext, path: Path) -> list[ImportReport]:
    """Import a file, a folder of one base, or a bundle folder of several bases."""
    if not path.exists():
        raise KnowledgeBaseError(f"{path}: no such file or directory")
    bases = knowledge_bases()
    if path.is_dir():
        children = sorted(path.iterdir())
        if any(child.is_dir() and _bundle_owner(child, bases) for child in children):
            reports: list[ImportReport] = []
            for child in children:
                owner = _bundle_owner(child, bases)
                try:
                    if owner is not None:
                        reports.extend(owner.import_path(ctx, child))
                    elif not _is_documentation(child) and not child.name.startswith("."):
                        reports.extend(import_any(ctx, child))
                except (KnowledgeBaseError, InputError) as exc:
                    # One unreadable part of a bundle must not cost the others.
                    name = owner.name if owner is not None else "unknown"
                    reports.append(ImportReport(child.name, name, str(child), "skipped", errors=[str(exc)]))
            return reports
    for kb in bases:
        if kb.claims(path):
            return kb.import_path(ctx, path)
    names = ", ".join(kb.name for kb in bases)
    raise KnowledgeBaseError(f"{path}: not a knowledge-base file this Tianmu can read (tried: {names})")


def default_sources() -> tuple[str, ...]:
    return tuple(source for kb in knowledge_bases() for source in kb.default_sources)


def update_sources(ctx: KbContext, sources: Sequence[str] | None = None) -> list[ImportReport]:
    """`tianmu kb update`: each named source (default: every base's defaults) fetched by its base."""
    wanted = list(sources) if sources else list(default_sources())
    bases = knowledge_bases()
    unknown = [s for s in wanted if not any(kb.handles_source(s) for kb in bases)]
    if unknown:
        raise KnowledgeBaseError(f"unknown knowledge-base source(s): {', '.join(unknown)}")
    reports: list[ImportReport] = []
    for kb in bases:
        mine = [s for s in wanted if kb.handles_source(s)]
        if mine:
            reports.extend(kb.update(ctx, mine))
    return reports
