"""Hostile check templates and hostile sites: a template's regular expression cannot hang a website
check on a long answer; one RE2 cannot take refuses its template at load with file, line, id, regex and
reason, and the other templates still load and run (issue 21).

Templates and pages are written here. The hang case runs the check in a child process under a
timeout, so that code which backtracks fails the test instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from network.servers import Page, Site, serve_http
from tianmu.websec.client import WebResponse
from tianmu.websec.engine import WebOptions, check_websites
from tianmu.websec.templates import load_template, load_templates

TEMPLATE = """id: {id}
name: {id}
severity: medium
request:
  paths: ["/dump"]
matchers:
  - type: status
    status: [200]
  - type: regex
    regex: [{regex}]
{extra}"""

HANG_GUARD = 120
"""Seconds the child may take: the linear engine needs well under one; backtracking, hours."""

CHILD = """
import sys
from pathlib import Path
from tianmu.websec.engine import WebOptions, check_websites

options = WebOptions(rate=200, builtin_templates=False, templates=(Path(sys.argv[2]),))
result = check_websites(None, [sys.argv[1]], options)
assert not result.errors, result.errors
print(sorted(f.rule_id for f in result.findings if f.rule_id.startswith("web.hostile")))
"""


def template(template_id: str, regex: str, extra: str = "") -> str:
    return TEMPLATE.format(id=template_id, regex=regex, extra=extra)


def response(body: str) -> WebResponse:
    return WebResponse("http://127.0.0.1/dump", 200, httpx.Headers({}), body.encode(), 0.0)


def test_catastrophic_template_regex_finishes_on_a_long_answer(tmp_path: Path) -> None:
    checks = tmp_path / "checks"
    checks.mkdir()
    # Under `re`, `(a+)+b` tries every split of the run of a's before giving up: 2**50000 ways.
    (checks / "nested.yaml").write_text(template("hostile-nested", "'(a+)+b'"))
    (checks / "tail.yaml").write_text(template("hostile-tail", "'^(a+)+!$'"))
    body = b"a" * 50_000 + b"!"
    site = Site(pages={"/": Page(200, [("Content-Type", "text/html")], b"<html>shop</html>"),
                       "/dump": Page(200, [("Content-Type", "text/plain")], body)})  # fmt: skip
    with serve_http(site) as port:
        try:
            done = subprocess.run(
                [sys.executable, "-c", CHILD, f"http://127.0.0.1:{port}/", str(checks)],
                capture_output=True,
                text=True,
                timeout=HANG_GUARD,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                "the template regex (a+)+b over a 50,000-character answer did not finish: it backtracks"
            )
    assert done.returncode == 0, done.stderr
    # The expressions were really matched: the one that holds on the answer is a finding.
    assert done.stdout.strip() == "['web.hostile-tail']"
    assert any(path == "/dump" for _method, path, _headers in site.requests)


@pytest.mark.parametrize(
    ("regex", "why"),
    [
        (r"'(\w+)=\1'", "back-references need backtracking"),
        (r"'(?P<k>\w+)=(?P=k)'", "back-references need backtracking"),
        (r"'(?<!\\)secret'", "look-around assertions"),
        (r"'password(?=:)'", "look-around assertions"),
        (r"'(?>a+)b'", "atomic groups and possessive quantifiers"),
        (r"'a++b'", "atomic groups and possessive quantifiers"),
        (r"'[[:alpha:]]+='", "reads as a POSIX class in RE2"),
    ],
)
@pytest.mark.filterwarnings("error::FutureWarning")  # `[[` is refused with its reason, not warned about
def test_regex_re2_cannot_take_refuses_its_template_with_the_reason(
    tmp_path: Path, regex: str, why: str
) -> None:
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "hostile.yaml").write_text(template("hostile-backtracking", regex))
    (checks / "good.yaml").write_text(template("good", "'^token='"))
    templates, errors = load_templates(checks)
    assert [t.id for t in templates] == ["good"]  # one refused template costs only itself
    source = regex.strip("'")  # YAML single quotes keep backslashes as they are
    (error,) = errors
    assert error.startswith(
        f"{checks / 'hostile.yaml'}:9: template 'hostile-backtracking': matchers[1]: "
        f"regex {source!r} refused: RE2 (linear-time matching) cannot take it: "
    ), error
    assert why in error


def test_a_refused_template_is_reported_by_the_check_and_the_others_run(tmp_path: Path) -> None:
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "backref.yaml").write_text(template("hostile-backref", r"'(\w+)=\1'"))
    (checks / "token.yaml").write_text(template("token-dump", "'^token='"))
    site = Site(pages={"/dump": Page(200, [("Content-Type", "text/plain")], b"x=x\ntoken=abc\n")})
    with serve_http(site) as port:
        result = check_websites(
            None,
            [f"http://127.0.0.1:{port}/"],
            WebOptions(rate=200, builtin_templates=False, templates=(checks,)),
        )
    assert [e for e in result.errors if "hostile-backref" in e and "back-references need backtracking" in e]
    rules = {f.rule_id for f in result.findings}
    assert "web.token-dump" in rules and "web.hostile-backref" not in rules


def test_template_regexes_keep_python_meaning(tmp_path: Path) -> None:
    path = tmp_path / "python.yaml"
    # `{,3}` is 0 to 3 and `\Z` the end of the text in Python; RE2 spells them otherwise.
    path.write_text(template("python-syntax", r"'^pin: \d{,3}\Z'", "    case-insensitive: true\n"))
    check = load_template(path)
    assert check.matches(response("user: bob\nPIN: 42"))  # multi-line `^`, case-insensitive
    assert check.matches(response("PIN: "))
    assert not check.matches(response("pin: 1234"))
    assert not check.matches(response("pin: 42\nmore"))  # `\Z` is the end of the text, not of a line
    assert not check.matches(response("pin: {,3}"))
