"""The shared linear-time compiler: Python's meaning kept in RE2, what needs backtracking refused with
the reason, a set that leaves out (and names) what it cannot take (issue 21)."""

from __future__ import annotations

import re

import pytest

from tianmu.core.regex import UnsafePattern, compile_linear, compile_set, pattern_problem, re2_source


def test_python_syntax_keeps_its_meaning() -> None:
    assert re2_source(r"a{,3}\Z", re.IGNORECASE | re.DOTALL) == r"(?is:a{0,3}\z)"
    assert re2_source(r"[\Z]\\Z\u00e9") == r"[\Z]\\Z\x{00e9}"  # `\Z` in a set and `\\Z` are not the anchor
    assert re2_source(r"[]{,3}]") == r"[]{,3}]"  # `{,3}` inside a set is text
    upto = compile_linear(r"^ab{,2}c\Z", re.MULTILINE)
    assert upto.search("x\nac") and upto.search("abbc") and not upto.search("abbbc")
    assert not upto.search("abc\n")  # `\Z`: the very end, not before a final newline
    assert compile_linear("caf\\u00e9", re.IGNORECASE).search("CAFÉ au lait")
    assert compile_linear("first.second", re.DOTALL).fullmatch("first\nsecond")
    assert not compile_linear("first.second").search("first\nsecond")


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (r"(\w+)=\1", "back-references need backtracking"),
        (r"(?P<k>a)(?P=k)", "back-references need backtracking"),
        (r"(?=.*secret)pass", "look-around assertions"),
        (r"(?<!\\)cmd", "look-around assertions"),
        (r"(?>a+)b", "atomic groups and possessive quantifiers"),
        (r"a*+b", "atomic groups and possessive quantifiers"),
        (r"[[:alpha:]]", "reads as a POSIX class in RE2"),
        (r"a{1001}", "invalid repetition size"),
        ("a\\", "a trailing backslash"),
    ],
)
def test_what_needs_backtracking_is_refused_with_the_reason(source: str, why: str) -> None:
    problem = pattern_problem(source)
    assert problem is not None and why in problem
    with pytest.raises(UnsafePattern, match=re.escape(why)):
        compile_linear(source)


def test_catastrophic_for_re_is_linear_here() -> None:
    assert pattern_problem(r"(a+)+b") is None
    assert not compile_linear(r"(a+)+b").search("a" * 50_000)
    assert compile_linear(r"(x|x)*y").search("x" * 50_000 + "y")


def test_a_set_leaves_out_and_names_what_it_cannot_take() -> None:
    patterns = [r"\\dropper\.exe", r"(\w+)\\\1", r"\\Temp\\", r"(?<!Windows)\\evil\.dll"]
    found = compile_set(patterns)
    assert found.patterns == (r"\\dropper\.exe", r"\\Temp\\")
    assert sorted(found.refused) == [r"(?<!Windows)\\evil\.dll", r"(\w+)\\\1"]
    assert "back-references need backtracking" in found.refused[r"(\w+)\\\1"]
    assert found.search(r"C:\Temp\Temp\dropper.exe") == [r"\\dropper\.exe", r"\\Temp\\"]
    # An undecodable byte of a file name (`os.fsdecode` keeps it as a lone surrogate): matched, no crash.
    assert found.search("C:\\Temp\\\udcff\\dropper.exe") == [r"\\dropper\.exe", r"\\Temp\\"]
    assert compile_set([r"(a)\1"]).search("aa") == []
