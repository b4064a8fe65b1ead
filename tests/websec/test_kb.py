"""Check templates as a knowledge base: `tianmu kb import` of a template folder, re-imports, removal,
and the imported checks running in `tianmu web`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from network.servers import Page, Site, serve_http
from tianmu.core.errors import KnowledgeBaseError
from tianmu.road.knowledge import import_any, kb_status
from tianmu.store import Store
from tianmu.store.knowledge import KbContext
from tianmu.websec.engine import WebOptions, check_websites
from tianmu.websec.kb import WebCheckKnowledgeBase, stored_checks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "websec"
ROBOTS = Site(
    pages={"/robots.txt": Page(200, [("Content-Type", "text/plain")], b"User-agent: *\nDisallow: /secret/\n")}
)


def test_claims_only_templates(tmp_path: Path) -> None:
    base = WebCheckKnowledgeBase()
    assert base.claims(FIXTURES / "custom-templates")
    assert base.claims(FIXTURES / "custom-templates" / "robots-secret.yml")
    sigma_like = tmp_path / "rule.yml"
    sigma_like.write_text("title: x\nlogsource: {product: linux}\ndetection: {sel: {a: 1}, condition: sel}\n")
    assert not base.claims(sigma_like)
    assert not base.claims(FIXTURES / "bad-templates")  # not every file there looks like a template


def test_import_run_reimport_remove(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "acme-checks"
    shutil.copytree(FIXTURES / "custom-templates", folder)
    (folder / "second.yaml").write_text(
        "id: acme-status\nname: Status page\nseverity: info\nrequest:\n  paths: ['/status']\n"
        "matchers:\n  - type: word\n    words: ['All systems go']\n"
    )
    ctx = KbContext(store=store, home=tmp_path)
    [report] = import_any(ctx, folder)
    assert (report.source, report.kind, report.status, report.added) == (
        "websec:acme-checks",
        "websec",
        "imported",
        2,
    )
    assert "websec:acme-checks" in {s.name for s in kb_status(store)}
    with serve_http(ROBOTS) as port:
        result = check_websites(store, [f"http://127.0.0.1:{port}/"], WebOptions(rate=200, save=False))
    assert "web.custom-robots-secret" in {f.rule_id for f in result.findings}
    [again] = import_any(ctx, folder)
    assert again.status == "unchanged"
    (folder / "second.yaml").unlink()
    [after] = import_any(ctx, folder)
    assert (after.status, after.removed) == ("updated", 1)
    templates, errors = stored_checks(store)
    assert [t.id for t in templates] == ["custom-robots-secret"] and errors == []


def test_nothing_readable(store: Store, tmp_path: Path) -> None:
    broken = tmp_path / "checks"
    broken.mkdir()
    (broken / "x.yaml").write_text("id: x\nname: x\nseverity: nope\nrequest:\n  paths: ['/']\nmatchers: []\n")
    with pytest.raises(KnowledgeBaseError, match="no check template could be read"):
        import_any(KbContext(store=store, home=tmp_path), broken)
