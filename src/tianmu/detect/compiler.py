"""Sigma conditions → a small picklable plan → closures; and the literals a rule cannot match without.

pySigma parses the rule (modifiers applied: `contains`, `all`, `base64offset`, `windash`, `cidr`,
`re`...) into a condition tree of field/value leaves. `plan_rule` turns that tree into *plan* nodes
(tuples of strings, numbers and regex sources: cheap to pickle, so the compiled rule base is cached on
disk) and `build` turns a plan into nested closures, once per rule at load time. Matching an event is
then calling one closure over the event's *view*: field names lower-cased (SQL column names and most
Sigma engines compare them case-insensitively), values as strings, lower-cased for the case-insensitive
comparisons Sigma specifies, original for `cased` and regular expressions.

Leaves over the same field that a rule ORs together (`Image|endswith: [list of 40 names]`) are merged
into one test: a frozenset look-up for equality, one `str.endswith(tuple)` for suffixes, one regex for
glob patterns.

Regular expressions (`|re`) and wildcard patterns are matched with RE2, in time linear in the value
(`tianmu.detect.patterns`): a hostile rule or log line cannot make a match backtrack for hours. An RE2
call costs a few microseconds, so a leaf first checks that the value holds the literal its pattern
cannot match without.

`required_literals(plan)` gives a set of lower-case strings of which at least one must occur in the
event's values for the rule to match, or None when no such set exists (a `not`, an `exists`, a number
comparison...). The engine feeds all rules' sets to one Aho-Corasick automaton and evaluates only the
rules whose literals occur in the event (plus the few without a set).
"""

from __future__ import annotations

import ipaddress
import re
import re._constants as sre_constants  # type: ignore[import-not-found]  # `sre_*` aliases are deprecated
import re._parser as sre_parse  # type: ignore[import-not-found]
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ahocorasick_rs

from tianmu.detect.patterns import UnsafePattern, compile_fullmatch, compile_search

__all__ = [
    "CompiledCorrelation",
    "CompiledRule",
    "Plan",
    "UnsupportedRule",
    "View",
    "build",
    "plan_fields",
    "required_literals",
    "techniques_of",
    "without_surrogates",
]

Plan = tuple[Any, ...]
View = tuple[Mapping[str, str], Mapping[str, str]]
"""(lower-cased values, original values), both keyed by lower-cased field name."""
Matcher = Callable[[View], bool]

_AUTOMATON_AT = 12
"""From this many substrings on, one Aho-Corasick pass beats testing them one by one."""
_MIN_LITERAL = 3
"""Shorter literals select too little to be worth a place in the automaton."""


class UnsupportedRule(Exception):
    """A rule uses something this engine cannot evaluate; the message says what."""


def plan_fields(plan: Plan, out: set[str] | None = None) -> set[str]:
    """Field names (lower-case) a plan reads."""
    out = set() if out is None else out
    if plan[0] in ("and", "or"):
        for child in plan[1]:
            plan_fields(child, out)
    elif plan[0] == "not":
        plan_fields(plan[1], out)
    elif plan[0] in ("str", "glob", "glob_cased", "re", "exists", "cidr", "cmp", "fieldref") and plan[1]:
        out.add(plan[1])
        if plan[0] == "fieldref":
            out.add(plan[2])
    return out


# --- required literals ----------------------------------------------------------------------------------


def _regex_literal(source: str, flags: int) -> str | None:
    """The longest literal run a regex must contain (lower-cased), when its top level is a sequence."""
    try:
        parsed = sre_parse.parse(source, flags)
    except (re.error, sre_constants.error, RecursionError):
        return None
    best = ""
    run: list[str] = []
    for op, arg in parsed:
        if op is sre_constants.LITERAL:
            run.append(chr(arg))
            continue
        best = max(best, "".join(run), key=len)
        run = []
        if op is sre_constants.BRANCH:
            return None
    best = max(best, "".join(run), key=len)
    return best.lower() if best else None


def required_literals(plan: Plan) -> frozenset[str] | None:
    """Lower-case strings one of which must occur in some value of an event the plan matches; or None."""
    op = plan[0]
    if op == "str":
        kind, values = plan[2], plan[3]
        lowered = [v.lower() for v in values]
        if kind.startswith("eq") and "" in lowered:
            return None
        if any(len(lit) < _MIN_LITERAL for lit in lowered):
            return None
        return frozenset(lowered)
    if op in ("glob", "glob_cased"):
        lowered = [lit.lower() for lit in plan[3]]
        return None if any(len(lit) < _MIN_LITERAL for lit in lowered) else frozenset(lowered)
    if op == "re":
        literal = _regex_literal(plan[2], plan[3])
        return frozenset({literal}) if literal and len(literal) >= _MIN_LITERAL else None
    if op == "or":
        union: set[str] = set()
        for child in plan[1]:
            lits = required_literals(child)
            if lits is None:
                return None
            union |= lits
        return frozenset(union)
    if op == "and":
        options = [lits for child in plan[1] if (lits := required_literals(child)) is not None]
        if not options:
            return None
        # The most selective: longest shortest literal, then the fewest literals.
        return max(options, key=lambda lits: (min(map(len, lits)), -len(lits)))
    return None


# --- plan → closures ------------------------------------------------------------------------------------


def _any_value(view: View, test: Callable[[str], bool], original: bool) -> bool:
    values = view[1] if original else view[0]
    return any(test(value) for value in values.values())


def _leaf(field: str | None, test: Callable[[str], bool], original: bool = False) -> Matcher:
    index = 1 if original else 0
    if field is None:
        return lambda view: _any_value(view, test, original)

    def match(view: View) -> bool:
        value = view[index].get(field)
        return value is not None and test(value)

    return match


def without_surrogates(text: str) -> str:
    """`text` with each lone surrogate (an undecodable byte a reader kept, a `\\udcff` escape in a JSON
    log) replaced by U+FFFD: the Aho-Corasick automata are Rust, whose strings cannot hold one."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _automaton_test(automaton: Any) -> Callable[[str], bool]:
    def test(value: str) -> bool:
        try:
            return bool(automaton.find_matches_as_indexes(value))
        except UnicodeEncodeError:
            return bool(automaton.find_matches_as_indexes(without_surrogates(value)))

    return test


def _string_test(kind: str, values: tuple[str, ...]) -> Callable[[str], bool]:
    base = kind.removesuffix("_cased")
    if base == "eq":
        if len(values) == 1:
            only = values[0]
            return lambda v: v == only
        members = frozenset(values)
        return members.__contains__
    if base == "prefix":
        return lambda v: v.startswith(values)
    if base == "suffix":
        return lambda v: v.endswith(values)
    if len(values) == 1:
        only = values[0]
        return lambda v: only in v
    if len(values) > _AUTOMATON_AT:
        # Long `contains` lists (SigmaHQ has rules with hundreds of names): one automaton pass.
        return _automaton_test(ahocorasick_rs.AhoCorasick(list(values)))
    return lambda v: any(item in v for item in values)


def _compare(op: str, number: float) -> Callable[[str], bool]:
    def test(value: str) -> bool:
        try:
            actual = float(value)
        except ValueError:
            return False
        if op == "lt":
            return actual < number
        if op == "lte":
            return actual <= number
        if op == "gt":
            return actual > number
        return actual >= number

    return test


def _cidr(networks: tuple[str, ...]) -> Callable[[str], bool]:
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]

    def test(value: str) -> bool:
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return False
        return any(address.version == net.version and address in net for net in nets)

    return test


def _glob_test(patterns: tuple[str, ...], literals: tuple[str, ...]) -> Callable[[str], bool]:
    """Wildcard patterns (one RE2 alternation), behind the check for their literals (in the same case
    as the value tested: exact, not a heuristic)."""
    try:
        fullmatch = compile_fullmatch(patterns)
    except UnsafePattern as exc:
        raise UnsupportedRule(f"wildcard pattern cannot be matched: {exc}") from exc
    if len(literals) != len(patterns) or not all(literals):
        return fullmatch
    if len(literals) == 1:
        only = literals[0]
        return lambda v: only in v and fullmatch(v)
    return lambda v: any(lit in v for lit in literals) and fullmatch(v)


def _regex_leaf(field: str | None, source: str, flags: int) -> Matcher:
    """A regular expression over the original values, tried only on values whose lower-cased text
    holds the expression's required literal (the rule prefilter's own test, `_regex_literal`)."""
    try:
        search = compile_search(source, flags)
    except UnsafePattern as exc:
        raise UnsupportedRule(f"regular expression {source!r} cannot be matched: {exc}") from exc
    literal = _regex_literal(source, flags)
    if literal is None:
        return _leaf(field, search, original=True)
    if field is None:
        return lambda view: any(literal in low and search(view[1][key]) for key, low in view[0].items())

    def match(view: View) -> bool:
        low = view[0].get(field)
        return low is not None and literal in low and search(view[1][field])

    return match


def build(plan: Plan) -> Matcher:
    """Closures for a plan (see the module docstring)."""
    op = plan[0]
    if op == "and":
        parts = [build(child) for child in plan[1]]
        if len(parts) == 2:
            first, second = parts
            return lambda view: first(view) and second(view)
        return lambda view: all(part(view) for part in parts)
    if op == "or":
        parts = [build(child) for child in plan[1]]
        return lambda view: any(part(view) for part in parts)
    if op == "not":
        inner = build(plan[1])
        return lambda view: not inner(view)
    if op == "str":
        return _leaf(plan[1], _string_test(plan[2], plan[3]), original=plan[2].endswith("_cased"))
    if op in ("glob", "glob_cased"):
        return _leaf(plan[1], _glob_test(plan[2], plan[3]), original=op == "glob_cased")
    if op == "re":
        return _regex_leaf(plan[1], plan[2], plan[3])
    if op == "exists":
        field, wanted = plan[1], plan[2]
        return lambda view: (field in view[0]) is wanted
    if op == "cidr":
        return _leaf(plan[1], _cidr(plan[2]))
    if op == "cmp":
        return _leaf(plan[1], _compare(plan[2], plan[3]))
    if op == "fieldref":
        field, other, kind = plan[1], plan[2], plan[3]

        def match(view: View) -> bool:
            left, right = view[0].get(field), view[0].get(other)
            if left is None or right is None:
                return False
            if kind == "eq":
                return left == right
            if kind == "prefix":
                return left.startswith(right)
            if kind == "suffix":
                return left.endswith(right)
            return right in left

        return match
    raise UnsupportedRule(f"unknown plan node {op!r}")


# --- compiled rules -------------------------------------------------------------------------------------

_TECHNIQUE = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


def techniques_of(tags: list[str]) -> tuple[str, ...]:
    """ATT&CK technique ids from `attack.tNNNN[.NNN]` tags."""
    found = (_TECHNIQUE.match(tag) for tag in tags)
    return tuple(dict.fromkeys(match.group(1).upper() for match in found if match))


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One detection rule, ready to build (picklable: it is what the on-disk cache holds)."""

    id: str
    title: str
    level: str
    logsource: dict[str, str | None]
    plan: Plan
    literals: frozenset[str] | None
    fields: tuple[str, ...]
    path: str
    name: str | None = None
    status: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    output: bool = True
    """False for base rules of a correlation that do not `generate` alerts of their own."""


@dataclass(frozen=True, slots=True)
class CompiledCorrelation:
    """One Sigma correlation rule over the matches of the rules it references."""

    id: str
    title: str
    level: str
    type: str
    rule_ids: tuple[str, ...]
    group_by: tuple[str, ...]
    timespan: float
    op: str
    count: float
    count_high: float | None
    value_field: str | None
    aliases: dict[str, dict[str, str]]
    """alias → {rule id → field name in that rule's events}."""
    path: str
    name: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    output: bool = True
    """False when another correlation refers to it without `generate: true`."""


@dataclass(frozen=True, slots=True)
class Unusable:
    path: str
    rule: str
    """Rule id or title ('' when the file itself could not be read)."""
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule + ': ' if self.rule else ''}{self.reason}"


@dataclass(slots=True)
class RuleBase:
    """Every compiled rule and correlation of a load, with what could not be used."""

    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[CompiledCorrelation] = field(default_factory=list)
    unusable: list[Unusable] = field(default_factory=list)
    files: int = 0
    digest: str = ""
    from_cache: bool = False
    file_digests: dict[str, str] = field(default_factory=dict)
    """Rule file (as displayed) → SHA-256 of its content, for incremental recompiles."""
