"""pySigma's parsed rules → Tianmu's plans (see `tianmu.detect.compiler` for what a plan is).

Only a cold start needs this module (and pySigma): a warm start reads compiled plans from the cache.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
)
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.policy import SigmaPolicy
from sigma.policy.regex_engine import PythonRegexEngine
from sigma.rule import SigmaLevel, SigmaRule
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from tianmu.detect.compiler import (
    CompiledCorrelation,
    CompiledRule,
    Plan,
    RuleBase,
    UnsupportedRule,
    Unusable,
    plan_fields,
    required_literals,
    techniques_of,
)
from tianmu.detect.logsource import logsource_problem
from tianmu.detect.patterns import pattern_problem

__all__ = ["compile_files", "plan_condition"]


def _string_plan(field: str | None, value: SigmaString) -> Plan:
    cased = isinstance(value, SigmaCasedString)
    parts: list[Any] = []
    plain = True
    for part in value.s:
        if type(part) is str:
            if not part:
                continue
            if parts and type(parts[-1]) is str:
                parts[-1] += part
            else:
                parts.append(part)
        elif isinstance(part, Placeholder):
            raise UnsupportedRule(f"placeholder %{part.name}% is not expanded")
        elif part is not None:
            plain = False
            parts.append(part)
    norm = (lambda text: text) if cased else str.lower
    multi, single = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
    if field is None:
        # A keyword is a full-text search: it may occur anywhere in a value.
        parts = [multi, *(parts or [""]), multi]
        parts = [
            p for i, p in enumerate(parts) if not (p is multi and i and parts[i - 1] is multi) and p != ""
        ]
    suffix = "_cased" if cased else ""
    if not parts:
        return ("str", field, "eq" + suffix, ("",))
    if plain and field is not None:
        return ("str", field, "eq" + suffix, (norm(parts[0]),))
    if parts == [multi]:
        return ("exists", field, True)
    if len(parts) == 2 and parts[0] is multi and isinstance(parts[1], str):
        return ("str", field, "suffix" + suffix, (norm(parts[1]),))
    if len(parts) == 2 and parts[1] is multi and isinstance(parts[0], str):
        return ("str", field, "prefix" + suffix, (norm(parts[0]),))
    if len(parts) == 3 and parts[0] is multi and parts[2] is multi and isinstance(parts[1], str):
        return ("str", field, "contains" + suffix, (norm(parts[1]),))
    pattern = "".join(
        ".*" if p is multi else "." if p is single else re.escape(norm(p)) for p in parts if p is not None
    )
    literal = max((norm(p) for p in parts if isinstance(p, str)), key=len, default="")
    problem = pattern_problem(pattern, re.DOTALL)
    if problem is not None:  # RE2's size limit, for a value of hundreds of kilobytes of wildcards
        raise UnsupportedRule(f"wildcard value cannot be matched in linear time (RE2): {problem}")
    return ("glob" + suffix, field, (pattern,), (literal,))


def _value_plan(field: str | None, value: Any) -> Plan:
    if type(value) is SigmaString:
        return _string_plan(field, value)
    if isinstance(value, SigmaExpansion):
        return ("or", tuple(_value_plan(field, item) for item in value.values))
    if isinstance(value, SigmaString):
        return _string_plan(field, value)
    if isinstance(value, SigmaTimestampPart):
        raise UnsupportedRule("timestamp-part modifiers (minute, hour, day...) are not supported")
    if isinstance(value, SigmaBool):
        return ("str", field, "eq", ("true", "1") if value.boolean else ("false", "0"))
    if isinstance(value, SigmaNumber):
        return ("str", field, "contains" if field is None else "eq", (str(value.number).lower(),))
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for flag in value.flags:
            flags |= {
                SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
                SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
                SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
            }[flag]
        source = value.regexp.to_plain() if isinstance(value.regexp, SigmaString) else str(value.regexp)
        try:
            re.compile(source, flags)
        except re.error as exc:
            raise UnsupportedRule(f"regular expression {source!r} is not valid in Python: {exc}") from exc
        # Refused rather than matched by backtracking, which a hostile log line can keep busy for hours.
        problem = pattern_problem(source, flags)
        if problem is not None:
            raise UnsupportedRule(
                f"regular expression {source!r} refused: RE2 (linear-time matching) cannot take it: {problem}"
            )
        return ("re", field, source, flags)
    if field is None:
        raise UnsupportedRule(f"keyword of type {type(value).__name__} is not supported")
    if isinstance(value, SigmaNull):
        return ("exists", field, False)
    if isinstance(value, SigmaExists):
        return ("exists", field, value.exists)
    if isinstance(value, SigmaCIDRExpression):
        return ("cidr", field, (str(value.network),))
    if isinstance(value, SigmaCompareExpression):
        ops = {
            CompareOperators.LT: "lt",
            CompareOperators.LTE: "lte",
            CompareOperators.GT: "gt",
            CompareOperators.GTE: "gte",
        }
        return ("cmp", field, ops[value.op], float(value.number.number))
    if isinstance(value, SigmaFieldReference):
        kind = (
            "contains"
            if value.starts_with and value.ends_with
            else "prefix"
            if value.starts_with
            else "suffix"
            if value.ends_with
            else "eq"
        )
        return ("fieldref", field, value.field.lower(), kind)
    raise UnsupportedRule(f"value type {type(value).__name__} is not supported")


def plan_condition(node: Any) -> Plan:
    """A parsed pySigma condition (rule.detection.parsed_condition[i].parsed) to a plan."""
    kind = type(node)  # exact types first: tens of thousands of nodes on a cold start
    if kind is ConditionFieldEqualsValueExpression:
        return _value_plan(node.field.lower() if node.field else None, node.value)
    if kind is ConditionOR:
        return _simplify(("or", tuple(plan_condition(arg) for arg in node.args)))
    if isinstance(node, ConditionAND):
        return _simplify(("and", tuple(plan_condition(arg) for arg in node.args)))
    if isinstance(node, ConditionOR):
        return _simplify(("or", tuple(plan_condition(arg) for arg in node.args)))
    if isinstance(node, ConditionNOT):
        return ("not", plan_condition(node.args[0]))
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _value_plan(node.field.lower() if node.field else None, node.value)
    if isinstance(node, ConditionValueExpression):
        return _value_plan(None, node.value)
    raise UnsupportedRule(f"condition element {type(node).__name__} is not supported")


def _simplify(plan: Plan) -> Plan:
    """Flatten nested and/or; merge OR-ed string tests of one field and kind into one test."""
    op, children = plan[0], plan[1]
    flat: list[Plan] = []
    for child in children:
        if child[0] == op:
            flat.extend(child[1])
        else:
            flat.append(child)
    if op == "or":
        merged: dict[tuple[Any, ...], list[str]] = {}
        rest: list[Plan] = []
        for child in flat:
            if child[0] == "str":
                merged.setdefault((child[1], child[2]), []).extend(child[3])
            else:
                rest.append(child)
        flat = [
            ("str", field, kind, tuple(dict.fromkeys(values))) for (field, kind), values in merged.items()
        ]
        flat += rest
    if len(flat) == 1:
        return flat[0]
    return (op, tuple(flat))


# --- rules and correlations ---------------------------------------------------------------------------


def _level(value: SigmaLevel | None) -> str:
    return value.name.lower() if value is not None else "medium"


def _strings(values: Iterable[Any] | None) -> tuple[str, ...]:
    return tuple(str(value) for value in values or ())


def _compile_rule(rule: SigmaRule, path: str) -> CompiledRule:
    problem = logsource_problem(rule.logsource.product, rule.logsource.category, rule.logsource.service)
    if problem:
        raise UnsupportedRule(problem)
    plans = [plan_condition(condition.parsed) for condition in rule.detection.parsed_condition]
    plan = plans[0] if len(plans) == 1 else ("or", tuple(plans))
    tags = [str(tag) for tag in rule.tags]
    return CompiledRule(
        id=str(rule.id) if rule.id else f"{path}:{rule.title}",
        title=rule.title,
        level=_level(rule.level),
        logsource={
            "product": rule.logsource.product,
            "category": rule.logsource.category,
            "service": rule.logsource.service,
        },
        plan=plan,
        literals=required_literals(plan),
        fields=tuple(sorted(plan_fields(plan))),
        path=path,
        name=rule.name,
        status=rule.status.name.lower() if rule.status else None,
        description=(rule.description or "").strip(),
        tags=tuple(tags),
        techniques=techniques_of(tags),
        references=_strings(rule.references),
        output=rule._output,
    )


_OPS = {
    SigmaCorrelationConditionOperator.GTE: "gte",
    SigmaCorrelationConditionOperator.GT: "gt",
    SigmaCorrelationConditionOperator.LTE: "lte",
    SigmaCorrelationConditionOperator.LT: "lt",
    SigmaCorrelationConditionOperator.EQ: "eq",
}


def _compile_correlation(rule: SigmaCorrelationRule, path: str) -> CompiledCorrelation:
    condition = rule.condition
    if not isinstance(condition, SigmaCorrelationCondition):
        raise UnsupportedRule("extended correlation conditions (boolean expressions) are not supported")
    op = _OPS.get(condition.op)
    if op is None:
        raise UnsupportedRule(f"correlation condition operator {condition.op} is not supported")
    if op in ("lt", "lte") and str(rule.type) in ("event_count", "value_count"):
        raise UnsupportedRule(
            "'lt'/'lte' counts need the end of each window; only lower bounds are supported"
        )
    referenced = []
    for reference in rule.rules or []:
        target = getattr(reference, "rule", None)
        if target is None or target.id is None:
            raise UnsupportedRule(f"referenced rule {reference.reference!r} was not found")
        referenced.append(str(target.id))
    # Alias mappings name rules by the same references as `rules:` (a name or an id), unresolved.
    by_reference = {
        str(ref.reference): str(ref.rule.id) for ref in rule.rules or [] if getattr(ref, "rule", None)
    }
    by_reference.update({known: known for known in referenced})
    aliases: dict[str, dict[str, str]] = {}
    for name, alias in rule.aliases.aliases.items():
        mapping: dict[str, str] = {}
        for ref, value in alias.mapping.items():
            rule_id = by_reference.get(str(ref.reference))
            if rule_id is None:
                raise UnsupportedRule(
                    f"alias {name!r} names rule {ref.reference!r}, which the correlation does not use"
                )
            mapping[rule_id] = str(value)
        aliases[name] = mapping
    fieldref = condition.fieldref
    value_field = fieldref[0] if isinstance(fieldref, list) and fieldref else fieldref
    tags = [str(tag) for tag in rule.tags]
    return CompiledCorrelation(
        id=str(rule.id) if rule.id else f"{path}:{rule.title}",
        title=rule.title,
        level=_level(rule.level),
        type=str(rule.type),
        rule_ids=tuple(referenced),
        group_by=tuple(rule.group_by or ()),
        timespan=float(rule.timespan.seconds),
        op=op,
        count=float(condition.count),
        count_high=None,
        value_field=str(value_field) if value_field else None,
        aliases=aliases,
        path=path,
        name=rule.name,
        description=(rule.description or "").strip(),
        tags=tuple(tags),
        techniques=techniques_of(tags),
        references=_strings(rule.references),
        output=rule._output,
    )


def _parse_files(files: Sequence[Path], display: dict[Path, str], base: RuleBase) -> list[Any]:
    parsed: list[Any] = []
    # pySigma only compiles a rule's regular expressions to validate them (it never matches with them):
    # with Python's syntax, the dialect rules are written in, so that `_value_plan` translates `\Z`,
    # `{,n}`... to RE2 and refuses, with the rule's place and reason, what RE2 cannot match. Template
    # variables and external sources stay refused, as in pySigma's default (safe) policy.
    policy = SigmaPolicy(regex_engine=PythonRegexEngine())
    for file in files:
        name = display[file]
        try:
            docs = [
                doc for doc in yaml.load_all(file.read_bytes(), Loader=yaml.CSafeLoader) if doc is not None
            ]
        except (OSError, yaml.YAMLError) as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f"{name}:{line + 1}" if line is not None else name
            base.unusable.append(Unusable(where, "", f"not valid YAML: {getattr(exc, 'problem', exc)}"))
            continue
        if not docs or not all(isinstance(doc, dict) for doc in docs):
            base.unusable.append(Unusable(name, "", "not a Sigma rule (YAML mapping expected)"))
            continue
        try:
            collection = SigmaCollection.from_dicts(
                docs,
                collect_errors=True,
                source=SigmaRuleLocation(Path(name)),
                resolve_references=False,
                collect_filters=True,  # applied once, below, to the rules of every file
                policy=policy,
            )
        except (SigmaError, ValueError, TypeError, KeyError, AttributeError) as exc:
            base.unusable.append(Unusable(name, "", f"cannot be parsed: {exc}"))
            continue
        # Errors of the file as a whole (an alias bomb, a recursive structure): pySigma drops the file's
        # rules and says so only here.
        # pySigma's message names the file resolved against the working directory: the file is ours to name.
        base.unusable.extend(
            Unusable(name, "", f"refused: {error.args[0] if error.args else error}")
            for error in collection.errors
        )
        for rule in collection.rules:
            parsed.append((name, rule))
        parsed.extend((name, flt) for flt in collection.filters)
    return parsed


def _compile(files: Sequence[Path], display: dict[Path, str]) -> RuleBase:
    with warnings.catch_warnings():
        # Python's `re` warns of `[[` ("possible nested set") while the rules' expressions are checked;
        # such a rule is refused with its reason (`pattern_problem`): the warning would say no more.
        warnings.filterwarnings("ignore", "Possible nested set", FutureWarning)
        return _compile_rules(files, display)


def _compile_rules(files: Sequence[Path], display: dict[Path, str]) -> RuleBase:
    base = RuleBase(files=len(files))
    parsed = _parse_files(files, display, base)
    every = [item for _, item in parsed]
    collection = SigmaCollection(every, collect_filters=True, resolve_references=False)  # type: ignore[call-arg]
    for _, rule in parsed:
        if isinstance(rule, SigmaCorrelationRule):
            try:
                rule.resolve_rule_references(collection)
            except SigmaError as exc:
                rule.errors.append(exc)  # reported below with the rule
    if collection.filters:
        try:
            collection.apply_filters(collection.filters)
        except SigmaError as exc:
            base.unusable.append(Unusable("(filters)", "", f"filters could not be applied: {exc}"))
    origin = {id(rule): name for name, rule in parsed}
    for rule in collection.rules:
        name = origin.get(id(rule)) or (str(rule.source.path) if rule.source else "?")
        label = str(rule.id or rule.title)
        if rule.errors:
            base.unusable.append(Unusable(name, label, "; ".join(str(error) for error in rule.errors[:3])))
            continue
        try:
            if isinstance(rule, SigmaCorrelationRule):
                base.correlations.append(_compile_correlation(rule, name))
            else:
                base.rules.append(_compile_rule(rule, name))
        except UnsupportedRule as exc:
            base.unusable.append(Unusable(name, label, str(exc)))
        except (SigmaError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            base.unusable.append(Unusable(name, label, f"{exc.__class__.__name__}: {exc}"))
    return base


def _needs_one_collection(file: Path) -> bool:
    """Correlations and filters refer to other rules: their files are compiled together, in order."""
    try:
        text = file.read_bytes()
    except OSError:
        return False
    return b"\ncorrelation:" in text or b"\nfilter:" in text or text.startswith((b"correlation:", b"filter:"))


def _compile_chunk(job: tuple[list[Path], dict[Path, str]]) -> RuleBase:
    return _compile(*job)


def compile_files(files: Sequence[Path], display: dict[Path, str]) -> RuleBase:
    """Compile in worker processes when the set is large and self-contained per file (SigmaHQ's is).

    Parsing YAML and building pySigma objects is CPU-bound Python: a cold start of ~2,400 rules takes
    seconds on one core. Files holding correlations or filters, which refer to rules of other files, are
    compiled together in this process.
    """
    joint = [file for file in files if _needs_one_collection(file)]
    workers = min(os.cpu_count() or 1, 8)
    if len(files) < 400 or workers < 2 or joint or "fork" not in multiprocessing.get_all_start_methods():
        return _compile(files, display)
    size = -(-len(files) // (workers * 4))
    chunks = [list(files[i : i + size]) for i in range(0, len(files), size)]
    base = RuleBase(files=len(files))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for part in pool.map(_compile_chunk, [(chunk, {f: display[f] for f in chunk}) for chunk in chunks]):
            base.rules.extend(part.rules)
            base.correlations.extend(part.correlations)
            base.unusable.extend(part.unusable)
    return base
