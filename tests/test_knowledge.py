"""The knowledge-base registry: bundles dispatched by folder name, files by content, clear refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tianmu.core.errors import KnowledgeBaseError
from tianmu.road.knowledge import default_sources, import_any, kb_status, knowledge_bases, update_sources
from tianmu.store.database import Store
from tianmu.store.knowledge import KbContext

DEMO_KB = Path(__file__).resolve().parents[1] / "demo" / "kb"


@pytest.fixture
def ctx(sqlite_store: Store, tmp_path: Path) -> KbContext:
    return KbContext(store=sqlite_store, home=tmp_path / "home")


def test_bundle_folder_goes_to_each_base_and_skips_documentation(ctx: KbContext, tmp_path: Path) -> None:
    bundle = tmp_path / "kb"
    shutil.copytree(DEMO_KB, bundle)
    (bundle / "NOTICE").write_text("copyright lines, not a knowledge base\n")
    reports = import_any(ctx, bundle)
    assert {r.source for r in reports} == {
        "kev",
        "osv:Debian",
        "osv:Go",
        "osv:PyPI",
        "osv:npm",
        "yara:kb",
        "list:shared-blocklist",
        "stix:northwind-partner-cert",
    }
    assert all(not r.errors for r in reports)
    assert {s.name for s in kb_status(ctx.store)} == {r.source for r in reports}


def test_a_file_no_base_claims_is_refused_by_name(ctx: KbContext, tmp_path: Path) -> None:
    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"\x00\x01 not a feed")
    with pytest.raises(KnowledgeBaseError, match=r"notes\.bin: not a knowledge-base file"):
        import_any(ctx, junk)
    with pytest.raises(KnowledgeBaseError, match="no such file"):
        import_any(ctx, tmp_path / "missing")


def test_update_refuses_unknown_sources_before_fetching_anything(ctx: KbContext) -> None:
    with pytest.raises(KnowledgeBaseError, match="unknown knowledge-base source"):
        update_sources(ctx, ["osv:PyPI", "no-such-feed"])


def test_every_base_has_a_distinct_name_and_folders() -> None:
    bases = knowledge_bases()
    names = [kb.name for kb in bases]
    assert len(names) == len(set(names))
    folders = [f for kb in bases for f in kb.bundle_folders]
    assert len(folders) == len(set(folders))
    assert "osv:PyPI" in default_sources() and "kev" in default_sources()
