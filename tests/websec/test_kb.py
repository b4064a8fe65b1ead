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
from tianmu.store.knowledge import ImportMode, KbContext
from tianmu.websec.engine import WebOptions, check_websites
from tianmu.websec.kb import WebCheckKnowledgeBase, import_checks, stored_checks

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
    # A merge (the default) keeps the stored template the folder no longer holds, and says so.
    [merged] = import_any(ctx, folder)
    assert (merged.removed, merged.record_count) == (0, 2)
    assert merged.errors == [
        "websec:acme-checks: merged: 1 stored record(s) not in this import were kept (--replace removes them)"
    ]
    [after] = import_any(KbContext(store=store, home=tmp_path, replace=True), folder)
    assert (after.status, after.removed, after.record_count) == ("updated", 1, 1)
    templates, errors = stored_checks(store)
    assert [t.id for t in templates] == ["custom-robots-secret"] and errors == []


def _template(folder: Path, number: int, word: str = "ok") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"check{number}.yaml").write_text(
        f"id: acme-{number}\nname: Check {number}\nseverity: low\nrequest:\n  paths: ['/{number}']\n"
        f"matchers:\n  - type: word\n    words: ['{word}']\n"
    )


def test_a_partial_folder_merges_and_replace_is_authoritative(store: Store, tmp_path: Path) -> None:
    full, partial = tmp_path / "full" / "acme", tmp_path / "demo" / "acme"  # one source: websec:acme
    for number in range(10):
        _template(full, number)
    _template(partial, 1, word="changed")
    _template(partial, 42)
    ctx = KbContext(store=store, home=tmp_path)
    [first] = import_any(ctx, full)
    assert (first.source, first.record_count) == ("websec:acme", 10)
    [merged] = import_any(ctx, partial)
    assert (merged.added, merged.updated, merged.removed, merged.record_count) == (1, 1, 0, 11)
    assert "9 stored record(s) not in this import were kept" in merged.errors[-1]
    assert len(stored_checks(store)[0]) == 11
    assert {s.name: s.record_count for s in kb_status(store)}["websec:acme"] == 11
    # --replace of the copy just merged (same digest) still removes what the merge kept.
    [replaced] = import_any(KbContext(store=store, home=tmp_path, replace=True), partial)
    assert (replaced.removed, replaced.record_count) == (9, 2)
    assert sorted(t.id for t in stored_checks(store)[0]) == ["acme-1", "acme-42"]


def test_an_official_copy_that_would_remove_most_checks_is_refused(store: Store, tmp_path: Path) -> None:
    full, partial = tmp_path / "full" / "acme", tmp_path / "cut" / "acme"
    for number in range(10):
        _template(full, number)
        if number < 3:
            _template(partial, number)
    import_checks(store, full)
    refused = import_checks(store, partial, ImportMode.OFFICIAL)
    assert (refused.status, refused.record_count) == ("refused", 10)
    assert refused.errors[0].startswith("websec:acme: refused: this copy would remove 7 of its 10 records")
    assert "templates it would remove: acme-3, acme-4, acme-5, acme-6, acme-7 and 2 more" in refused.errors[0]
    assert len(stored_checks(store)[0]) == 10
    assert import_checks(store, partial, ImportMode.REPLACE).record_count == 3


def test_nothing_readable(store: Store, tmp_path: Path) -> None:
    broken = tmp_path / "checks"
    broken.mkdir()
    (broken / "x.yaml").write_text("id: x\nname: x\nseverity: nope\nrequest:\n  paths: ['/']\nmatchers: []\n")
    with pytest.raises(KnowledgeBaseError, match="no check template could be read"):
        import_any(KbContext(store=store, home=tmp_path), broken)
