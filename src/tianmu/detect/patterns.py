"""Sigma regular expressions and wildcard patterns, matched in linear time with RE2.

Python's `re` backtracks: `(a+)+b`, `(x|x)*y` or `(.*a){20}` against a long line of `a`s runs for
hours, and even the `.*` of a Sigma wildcard value (`*a*b*c`) is polynomial in the length of the value.
The log line is the attacker's, and a rule set may be too, so every `|re` value and every wildcard
pattern is compiled with RE2 (`google-re2`), whose matching time is linear in the input whatever the
pattern. RE2 cannot express back-references, look-around, atomic groups or possessive quantifiers
(they need backtracking): a rule using them is refused at import with the reason (`pattern_problem`),
never matched by a backtracking engine.

Rules are written for Python/PCRE syntax; `re2_source` translates what RE2 spells differently and
refuses what it would silently read otherwise:

- the `i`, `m`, `s` sub-modifiers become inline flags around the whole expression;
- `\\Z` (Python: end of text) becomes RE2's `\\z`; `\\uXXXX` and `\\UXXXXXXXX` become `\\x{...}`;
- `x{,n}` (Python: 0 to n) becomes `x{0,n}`: RE2 would read `{,n}` as literal text;
- `[:` inside a character class is refused: RE2 reads `[[:alpha:]]` as a POSIX class, Python as a set
  of characters followed by `]`.

Known differences that remain (documented, not translated): `\\d`, `\\w`, `\\s` and `\\b` are ASCII in
RE2 (as in PCRE), Unicode in Python; without `m`, `$` matches only at the very end of a value (Python
and PCRE also match before a final newline). Values are matched as UTF-8; a lone surrogate (an
undecodable byte kept by a reader) is encoded as is and matches no character class.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import re2

__all__ = ["UnsafePattern", "compile_fullmatch", "compile_search", "pattern_problem", "re2_source"]

_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))
_HEX = frozenset("0123456789abcdefABCDEF")
_UPTO = re.compile(r"\{,(\d+)\}")
_BACKTRACKING = (
    (re.compile(r"\(\?<?[=!]"), "look-around assertions ((?=, (?!, (?<=, (?<!) need backtracking"),
    (re.compile(r"\\[1-9]|\(\?P="), "back-references need backtracking"),
    (re.compile(r"\(\?>|[*+?}]\+"), "atomic groups and possessive quantifiers need backtracking"),
)


class UnsafePattern(ValueError):
    """A pattern RE2 cannot match as Python would; the message says why."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the refusal is reported with the rule, not printed to stderr by RE2
    return options


def _escape(source: str, index: int, in_class: bool) -> tuple[str, int]:
    """RE2's spelling of the escape at `source[index]` (a backslash), and the index after it."""
    if index + 1 >= len(source):
        raise UnsafePattern("a trailing backslash")
    letter = source[index + 1]
    if letter == "Z" and not in_class:
        return r"\z", index + 2
    if letter in "uU":
        digits = 4 if letter == "u" else 8
        code = source[index + 2 : index + 2 + digits]
        if len(code) == digits and set(code) <= _HEX:
            return rf"\x{{{code}}}", index + 2 + digits
    return source[index : index + 2], index + 2


def re2_source(source: str, flags: int = 0) -> str:
    """The RE2 spelling of a Python regular expression with `re` flags (see the module docstring)."""
    out: list[str] = []
    index, in_class, class_start = 0, False, 0
    while index < len(source):
        char = source[index]
        if char == "\\":
            text, index = _escape(source, index, in_class)
            out.append(text)
            continue
        if in_class:
            # A `]` first in a set (`[]a]`, `[^]a]`) is a member, not its end.
            if char == "]" and index > class_start:
                in_class = False
            elif char == "[" and source.startswith("[:", index):
                raise UnsafePattern("'[:' inside a character class reads as a POSIX class in RE2")
        elif char == "[":
            in_class = True
            class_start = index + 1 + (source.startswith("^", index + 1))
        elif char == "{" and (upto := _UPTO.match(source, index)):
            out.append(f"{{0,{upto.group(1)}}}")
            index = upto.end()
            continue
        out.append(char)
        index += 1
    translated = "".join(out)
    letters = "".join(letter for flag, letter in _FLAGS if flags & flag)
    return f"(?{letters}:{translated})" if letters else translated


def _compile(pattern: str) -> Any:
    try:
        # Encoded here, not by re2: a lone surrogate in a rule is then RE2's "invalid UTF-8" refusal.
        return re2.compile(pattern.encode("utf-8", "surrogatepass"), _options())
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        raise UnsafePattern(text) from exc


def _explained(source: str, exc: UnsafePattern) -> UnsafePattern:
    for pattern, why in _BACKTRACKING:
        if pattern.search(source):
            return UnsafePattern(f"{why} ({exc})")
    return exc


def pattern_problem(source: str, flags: int = 0) -> str | None:
    """Why the regular expression cannot be matched in linear time as Python would, or None."""
    try:
        _compile(re2_source(source, flags))
    except UnsafePattern as exc:
        return str(_explained(source, exc))
    return None


def compile_search(source: str, flags: int = 0) -> Callable[[str], bool]:
    """A test: does the regular expression occur in a value (`re.search`), in linear time."""
    try:
        search = _compile(re2_source(source, flags)).search
    except UnsafePattern as exc:
        raise _explained(source, exc) from exc
    return lambda value: search(value.encode("utf-8", "surrogatepass")) is not None


def compile_fullmatch(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A test: does one of the wildcard patterns (`re` syntax, `.` matching newlines too) match a
    whole value, in linear time — one RE2 program for all of them."""
    joined = "|".join(f"(?:{re2_source(pattern)})" for pattern in patterns)
    fullmatch = _compile(f"(?s:{joined})").fullmatch
    return lambda value: fullmatch(value.encode("utf-8", "surrogatepass")) is not None
