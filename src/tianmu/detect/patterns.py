"""Sigma regular expressions and wildcard patterns, matched in linear time with RE2.

The log line is the attacker's, and a rule set may be too, so every `|re` value and every wildcard
pattern is compiled with RE2 through `tianmu.core.regex` (the translation of Python syntax, the
refusal of what needs backtracking, and the known differences are described there). A rule using an
expression RE2 cannot take is refused at import with the reason (`pattern_problem`), never matched by a
backtracking engine.

What is Sigma's here: the `i`, `m`, `s` sub-modifiers of `|re` arrive as `re` flags (see
`tianmu.detect.translate`), and a value with wildcards (`*a*b*c`, whose `.*` is polynomial in the length
of the value under `re`) becomes a whole-value match, all the wildcard values of one test in a single
RE2 program.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tianmu.core.regex import UnsafePattern, compile_linear, compile_re2, pattern_problem, re2_source

__all__ = ["UnsafePattern", "compile_fullmatch", "compile_search", "pattern_problem", "re2_source"]


def compile_search(source: str, flags: int = 0) -> Callable[[str], bool]:
    """A test: does the regular expression occur in a value (`re.search`), in linear time."""
    return compile_linear(source, flags).search


def compile_fullmatch(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A test: does one of the wildcard patterns (`re` syntax, `.` matching newlines too) match a
    whole value, in linear time — one RE2 program for all of them."""
    joined = "|".join(f"(?:{re2_source(pattern)})" for pattern in patterns)
    return compile_re2(f"(?s:{joined})").fullmatch
