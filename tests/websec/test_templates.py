"""The YAML check-template format: the starter checks load, bad templates are located, matchers work."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tianmu.core.errors import ParseError
from tianmu.websec.client import WebResponse
from tianmu.websec.templates import BUILTIN_CHECKS, load_template, load_templates

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "websec"


def response(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> WebResponse:
    return WebResponse("http://127.0.0.1/x", status, httpx.Headers(headers or {}), body, 0.0)


def test_builtin_checks_load() -> None:
    templates, errors = load_templates()
    assert errors == []
    ids = {t.id for t in templates}
    assert {
        "git-head-exposed",
        "env-file-exposed",
        "backup-archive-exposed",
        "server-status-exposed",
        "directory-listing",
        "admin-console-exposed",
    } <= ids
    assert all(t.method in ("GET", "HEAD") for t in templates)
    assert all(t.rule_id.startswith("web.") for t in templates)


def test_git_head_matches_only_git_content() -> None:
    template = load_template(BUILTIN_CHECKS / "git-head-exposed.yaml")
    assert template.matches(response(200, b"ref: refs/heads/main\n"))
    assert not template.matches(response(404, b"ref: refs/heads/main\n"))
    assert not template.matches(response(200, b"<html>Welcome</html>"))


def test_env_file_negative_header_matcher() -> None:
    template = load_template(BUILTIN_CHECKS / "env-file-exposed.yaml")
    assert template.matches(
        response(200, b"DB_PASSWORD=hunter2\nAPP_KEY=base64:x\n", {"Content-Type": "text/plain"})
    )
    assert not template.matches(
        response(200, b"DB_PASSWORD=x\n", {"Content-Type": "text/html; charset=utf-8"})
    )


def test_backup_signatures() -> None:
    template = load_template(BUILTIN_CHECKS / "backup-archive-exposed.yaml")
    assert template.matches(response(200, b"PK\x03\x04\x14\x00rest"))
    assert template.matches(response(200, b"\x1f\x8b\x08\x00\x00"))
    assert template.matches(response(200, b"-- MySQL dump 10.13\n"))
    assert not template.matches(response(200, b"<html>PK</html>"))


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        ("bad-method.yaml", 5, "GET or HEAD only"),
        ("bad-matcher.yaml", 10, "matchers[1]: unknown type 'words'"),
        ("bad-key.yaml", 4, "unknown key 'severty'"),
        ("bad-yaml.yaml", 6, "not valid YAML"),
        ("bad-regex.yaml", 9, "bad regex"),
    ],
)
def test_bad_templates_are_located(name: str, line: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        load_template(FIXTURES / "bad-templates" / name)
    assert info.value.line == line, str(info.value)
    assert message in str(info.value)
    assert name in str(info.value)


def test_directory_keeps_good_and_reports_bad() -> None:
    templates, errors = load_templates(FIXTURES / "bad-templates", FIXTURES / "custom-templates")
    assert [t.id for t in templates] == ["custom-robots-secret"]
    assert len(errors) == 5
