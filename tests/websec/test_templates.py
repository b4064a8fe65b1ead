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


# Every starter check on a page that should trip it and on a near miss.
STARTER_CASES = {
    "git-config-exposed": (
        response(200, b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n"),
        response(200, b"<html>[core] values</html>"),
    ),
    "server-status-exposed": (
        response(200, b"Active connections: 3 \nserver accepts handled requests\n"),
        response(200, b"<html>All systems operational</html>"),
    ),
    "directory-listing": (
        response(200, b"<html><head><title>Directory listing for /static/</title></head></html>"),
        response(200, b"<html><head><title>Static files</title></head></html>"),
    ),
    "admin-console-exposed": (
        response(401, b"", {"WWW-Authenticate": 'Basic realm="Tomcat Manager Application"'}),
        response(401, b"", {"WWW-Authenticate": 'Basic realm="Intranet"'}),
    ),
    "phpinfo-exposed": (
        response(
            200, b"<html><head><title>PHP 8.2.7 - phpinfo()</title></head><body>PHP Version 8.2.7</body>"
        ),
        response(200, b"<html><head><title>PHP tutorial</title></head><body>PHP Version notes</body>"),
    ),
    "htpasswd-exposed": (
        response(200, b"admin:$apr1$Qb9Zk1e7$3zvY3oQ3sC1D6TRZbqCwD1\n"),
        response(200, b"<html>admin: see the manual</html>"),
    ),
}


@pytest.mark.parametrize("template_id", sorted(STARTER_CASES))
def test_starter_check_positive_and_negative(template_id: str) -> None:
    template = load_template(BUILTIN_CHECKS / f"{template_id}.yaml")
    positive, negative = STARTER_CASES[template_id]
    assert template.matches(positive)
    assert not template.matches(negative)
