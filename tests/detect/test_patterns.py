"""Hostile Sigma rules and log lines: regular expressions and wildcards cannot hang detection; what RE2
cannot take is refused with its place and reason; an alias bomb is refused, not expanded (issue 21).

Every rule and event is written here. The hang cases run in a child process under a timeout, so that
code which backtracks fails the test instead of hanging the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tianmu.detect.kb import load_rule_base
from tianmu.detect.patterns import UnsafePattern, compile_search, pattern_problem, re2_source

from .conftest import RuleLoader, evtx_event, matches

RULE = """
title: {title}
id: 00000000-0000-4000-8000-{number:012d}
status: test
logsource:
    product: windows
    category: process_creation
detection:
    sel:
        CommandLine{modifier}: {value}
    condition: sel
"""

HANG_GUARD = 120
"""Seconds the child may take: the linear engine needs well under one; backtracking, hours."""

CHILD = """
import sys
from pathlib import Path
from tianmu.core.models import Event, Location
from tianmu.detect.engine import Detector
from tianmu.detect.kb import load_rule_base

base = load_rule_base([Path(sys.argv[1])])
assert not base.unusable, base.unusable
line = sys.argv[2] * 50_000 + sys.argv[3]
event = Event(
    fields={"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "CommandLine": line},
    raw="{}", origin=Location("hostile.evtx", 1), source_type="evtx",
)
hits, _ = Detector(base).match(event)
print(len(hits))
"""


def rule(value: str, modifier: str = "|re", number: int = 1, title: str = "hostile") -> str:
    return RULE.format(title=title, number=number, modifier=modifier, value=value)


@pytest.mark.parametrize(
    ("modifier", "value", "char", "end", "hits"),
    [
        ("|re", "'(a+)+b'", "a", "", 0),
        ("|re", "'(x|x)*y'", "x", "", 0),
        ("|re", "'(.*a){20}$'", "a", "!", 0),
        ("|re|i", "'^(\\w+\\s?)*$'", "a", "!", 0),  # the classic e-mail-validator hang
        ("", "'*a*a*a*a*a*a*a*b'", "a", "", 0),  # a wildcard value: `.*a.*a...` backtracks polynomially
    ],
)
def test_catastrophic_patterns_finish_on_a_long_line(
    tmp_path: Path, modifier: str, value: str, char: str, end: str, hits: int
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "hostile.yml").write_text(rule(value, modifier))
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), char, end],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"CommandLine{modifier}: {value} over 50,000 {char!r}s did not finish: it backtracks")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(hits)


def test_patterns_keep_sigma_semantics(load_rules: RuleLoader) -> None:
    texts = [
        rule("'invoke-\\w*expression'", "|re|i", 1, "ignorecase"),
        rule("'^second$'", "|re|m", 2, "multiline"),
        rule("'first.second'", "|re|s", 3, "dotall"),
        rule("'^first.second$'", "|re", 4, "plain"),
        rule("'ab{,2}c\\Z'", "|re", 5, "python syntax"),
        rule("'caf\\u00e9'", "|re", 6, "unicode escape"),
        rule("'C:\\\\*\\\\pws?.exe -*c*'", "", 7, "wildcards"),
        rule("'*MiniDump*Full'", "|cased", 8, "cased wildcard"),
    ]
    base = load_rules("\n---\n".join(texts))
    assert not base.unusable, base.unusable

    def hit(value: str) -> set[str]:
        return set(matches(base, evtx_event({"EventID": 1, "CommandLine": value})))

    assert "ignorecase" in hit("INVOKE-WebExpression") and "ignorecase" not in hit("invoke expression")
    assert "multiline" in hit("first\nsecond\nthird") and "multiline" not in hit("first second")
    assert "dotall" in hit("first\nsecond") and "plain" not in hit("first\nsecond")
    assert "plain" in hit("first-second")
    assert {"python syntax"} <= hit("xabbc") and "python syntax" not in hit("abbbc")
    assert "python syntax" in hit("ac")  # `{,2}` is 0 to 2, not the text "{,2}"
    assert "unicode escape" in hit("un café")
    assert "wildcards" in hit("c:\\tools\\PWSH.exe -nop -c x") and "wildcards" not in hit("c:\\pwsh.exe -c")
    assert "cased wildcard" in hit("rundll32 MiniDump 123 Full")
    assert "cased wildcard" not in hit("rundll32 minidump 123 Full")


def test_a_lone_surrogate_in_a_value_is_matched_not_a_crash(load_rules: RuleLoader) -> None:
    many = "[" + ", ".join(f"'payload{i}'" for i in range(13)) + "]"  # a list long enough for an automaton
    texts = [
        rule("'evil.*payload'", "|re", 1, "re"),
        rule("'*evil*load*'", "", 2, "glob"),
        rule(many, "|contains", 3, "contains"),
    ]
    base = load_rules("\n---\n".join(texts))
    value = "evil \udcff payload7"  # an undecodable byte a reader kept, or a `\udcff` escape in JSON
    assert set(matches(base, evtx_event({"EventID": 1, "CommandLine": value}))) == {"re", "glob", "contains"}


@pytest.mark.parametrize(
    ("regex", "why"),
    [
        ("'(\\w+)=\\1'", "back-references need backtracking"),
        ("'(?=.*secret)pass'", "look-around assertions"),
        ("'(?<!\\\\)cmd'", "look-around assertions"),
        ("'(?>a+)b'", "atomic groups and possessive quantifiers"),
        ("'[[:alpha:]]+'", "reads as a POSIX class in RE2"),
        ("'a{1001}'", "invalid repetition size"),
    ],
)
@pytest.mark.filterwarnings("error::FutureWarning")  # `[[` is refused with its reason, not warned about
def test_what_re2_cannot_take_is_refused_with_file_rule_and_reason(
    tmp_path: Path, regex: str, why: str
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "bad.yml").write_text(rule(regex, "|re", 7))
    (folder / "good.yml").write_text(rule("'mimikatz'", "|re", 8, "good"))
    base = load_rule_base([folder])
    assert [r.title for r in base.rules] == ["good"]  # one refused rule costs only itself
    (unusable,) = base.unusable
    source = regex.strip("'")  # YAML single quotes keep backslashes as they are
    assert str(unusable).startswith(
        f"rules/bad.yml: 00000000-0000-4000-8000-000000000007: regular expression {source!r} refused"
    )
    assert why in unusable.reason


def test_pattern_translation() -> None:
    assert re2_source(r"a{,3}\Z", re.IGNORECASE | re.DOTALL) == r"(?is:a{0,3}\z)"
    assert re2_source(r"[\Z]\\Z\u00e9") == r"[\Z]\\Z\x{00e9}"  # `\Z` in a set and `\\Z` are not the anchor
    assert re2_source(r"[]{,3}]") == r"[]{,3}]"  # `{,3}` inside a set is text
    assert pattern_problem(r"(a+)+b") is None  # catastrophic for `re`, linear for RE2
    assert compile_search("\udcff")("x\udcffy")  # a lone surrogate, in a rule and a value: no crash
    with pytest.raises(UnsafePattern, match="back-references"):
        compile_search(r"(a)\1")


def test_yaml_alias_bomb_is_refused_with_its_file_not_expanded(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    anchors = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    anchors += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = rule("*x9", "|contains", 9, "bomb").replace("detection:", "\n".join(anchors) + "\ndetection:")
    (folder / "bomb.yml").write_text(bomb)  # 9**10 = 3.5 billion strings once expanded
    (folder / "good.yml").write_text(rule("'mimikatz'", "|contains", 8, "good"))
    base = load_rule_base([folder])
    assert [r.title for r in base.rules] == ["good"]
    assert [str(u) for u in base.unusable] == [
        "rules/bomb.yml: refused: YAML aliases expand to too many nodes (possible 'billion laughs' attack)"
    ]


def test_no_sigmahq_regex_is_refused_by_re2(shared_data: Path) -> None:
    # The rule files with a `|re` modifier, compiled: RE2 takes every one of SigmaHQ's expressions.
    files = [
        path
        for path in sorted((shared_data / "sigma").rglob("*.yml"))
        if "|re" in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert len(files) > 80
    folder_rules: list[str] = []
    refused: list[str] = []
    for path in files:
        base = load_rule_base([path])
        folder_rules.extend(r.id for r in base.rules)
        refused.extend(str(u) for u in base.unusable if "RE2" in u.reason)
    assert refused == []
    assert len(folder_rules) > 80
