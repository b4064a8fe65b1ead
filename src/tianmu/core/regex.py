"""Regular expressions over attacker-controlled text, matched in linear time with RE2.

Python's `re` backtracks: `(a+)+b`, `(x|x)*y` or `(.*a){20}` against a long line of `a`s runs for
hours. A log line, an HTTP answer of a scanned site or a file path is the attacker's, and a rule set,
a check template or an indicator feed may be too, so every capability that matches such text with an
expression it was given compiles it here, with RE2 (`google-re2`), whose matching time is linear in the
input whatever the pattern. RE2 cannot express back-references, look-around, atomic groups or
possessive quantifiers (they need backtracking): such an expression is refused with the reason
(`UnsafePattern`, `pattern_problem`), for the caller to report with its file and id — never matched by
a backtracking engine instead.

Expressions are written for Python/PCRE syntax; `re2_source` translates what RE2 spells differently
and refuses what it would silently read otherwise:

- the `re.IGNORECASE`, `re.MULTILINE`, `re.DOTALL` flags become inline flags around the expression;
- `\\Z` (Python: end of text) becomes RE2's `\\z`; `\\uXXXX` and `\\UXXXXXXXX` become `\\x{...}`;
- `x{,n}` (Python: 0 to n) becomes `x{0,n}`: RE2 would read `{,n}` as literal text;
- `[:` inside a character class is refused: RE2 reads `[[:alpha:]]` as a POSIX class, Python as a set
  of characters followed by `]`.

Known differences that remain (documented, not translated): `\\d`, `\\w`, `\\s` and `\\b` are ASCII in
RE2 (as in PCRE), Unicode in Python; without `re.MULTILINE`, `$` matches only at the very end of a
text (Python and PCRE also match before a final newline); repeats are limited to 1000. Text is matched
as UTF-8; a lone surrogate (an undecodable byte kept by a reader or `os.fsdecode`) is encoded as is
and matches no character class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import re2

__all__ = [
    "LinearPattern",
    "LinearSet",
    "UnsafePattern",
    "compile_linear",
    "compile_re2",
    "compile_set",
    "pattern_problem",
    "re2_source",
]

_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))
_HEX = frozenset("0123456789abcdefABCDEF")
_UPTO = re.compile(r"\{,(\d+)\}")
_BACKTRACKING = (
    (re.compile(r"\(\?<?[=!]"), "look-around assertions ((?=, (?!, (?<=, (?<!) need backtracking"),
    (re.compile(r"\\[1-9]|\(\?P="), "back-references need backtracking"),
    (re.compile(r"\(\?>|[*+?}]\+"), "atomic groups and possessive quantifiers need backtracking"),
)


class UnsafePattern(ValueError):
    """An expression RE2 cannot match as Python would; the message says why."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the refusal is reported with its file and id, not printed to stderr
    return options


def _utf8(text: str) -> bytes:
    # `surrogatepass`: a lone surrogate is matched (by nothing), not a crash in the middle of a job.
    return text.encode("utf-8", "surrogatepass")


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


def _re2_error(exc: Exception) -> UnsafePattern:
    detail = exc.args[0] if exc.args else exc
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return UnsafePattern(text or type(exc).__name__)


def _explained(source: str, exc: UnsafePattern) -> UnsafePattern:
    """RE2's own message ("invalid perl operator: (?<") with the reason a reader understands first."""
    for pattern, why in _BACKTRACKING:
        if pattern.search(source):
            return UnsafePattern(f"{why} ({exc})")
    return exc


@dataclass(frozen=True, slots=True)
class LinearPattern:
    """A compiled expression; `pattern` is the source as it was written (before translation)."""

    pattern: str
    _program: Any

    def search(self, text: str) -> bool:
        """Does the expression occur in the text (`re.search`)?"""
        return self._program.search(_utf8(text)) is not None

    def fullmatch(self, text: str) -> bool:
        """Does the expression match the whole text (`re.fullmatch`)?"""
        return self._program.fullmatch(_utf8(text)) is not None


def compile_re2(translated: str, pattern: str | None = None) -> LinearPattern:
    """An expression already in RE2 syntax (see `re2_source`), compiled; UnsafePattern when RE2
    refuses it. `pattern` is the source to keep as `LinearPattern.pattern` (default: `translated`)."""
    try:
        # Encoded here, not by re2: a lone surrogate in an expression is then RE2's "invalid UTF-8".
        program = re2.compile(_utf8(translated), _options())
    except re2.error as exc:
        raise _re2_error(exc) from exc
    return LinearPattern(translated if pattern is None else pattern, program)


def compile_linear(source: str, flags: int = 0) -> LinearPattern:
    """A Python regular expression with `re` flags, compiled for linear-time matching.

    Raises UnsafePattern, saying why, when RE2 cannot match it as Python would.
    """
    try:
        return compile_re2(re2_source(source, flags), source)
    except UnsafePattern as exc:
        raise _explained(source, exc) from exc


def pattern_problem(source: str, flags: int = 0) -> str | None:
    """Why the regular expression cannot be matched in linear time as Python would, or None."""
    try:
        compile_linear(source, flags)
    except UnsafePattern as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class LinearSet:
    """Many expressions in one RE2 automaton: one pass over a text says which of them occur in it."""

    patterns: tuple[str, ...]
    """The expressions taken, as written."""
    refused: dict[str, str]
    """Each expression RE2 cannot take, with the reason; none of them is matched."""
    _program: Any

    def search(self, text: str) -> list[str]:
        """The expressions (as written) that occur in the text, in the order they were given."""
        if not self.patterns:
            return []
        return [self.patterns[i] for i in sorted(self._program.Match(_utf8(text)) or ())]


def compile_set(sources: Iterable[str], flags: int = 0) -> LinearSet:
    """One RE2 set over the expressions; those RE2 cannot take are left out with their reason."""
    program = re2.Set.SearchSet(_options())
    taken: list[str] = []
    refused: dict[str, str] = {}
    for source in sources:
        # Compiled alone first: the set's own refusal is a bare error without RE2's message.
        problem = pattern_problem(source, flags)
        if problem is not None:
            refused[source] = problem
            continue
        program.Add(_utf8(re2_source(source, flags)))
        taken.append(source)
    if taken:
        program.Compile()
    return LinearSet(tuple(taken), refused, program)
