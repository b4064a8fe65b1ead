"""The rule base: Sigma rules loaded with pySigma, compiled once, cached on disk; `tianmu rules status`.

Rules come from three places, in this order: our starter pack (shipped in the package, always there),
the rule sets imported with `tianmu kb import` (copied under `<home>/detect/sigma/<source>/`, one
`kb_sources` row each, kind `sigma`), and folders named with `tianmu detect --rules`.

Loading reads each YAML file (multi-document files, `action: global|reset|repeat` collections,
correlation and filter documents: pySigma's `SigmaCollection.from_dicts`), resolves correlation
references across all files, and compiles each rule (`tianmu.detect.compiler`). A rule that cannot be
used is never fatal: it is listed with its file and reason (`unusable`), and counted.

Cache: the compiled base (plans, literals, metadata: no closures) is pickled under
`<home>/cache/detect/<digest>.pickle`, the digest being SHA-256 over Tianmu's version and every rule
file's name and content. A warm start reads the files (to hash them) and unpickles, skipping YAML
parsing and pySigma entirely.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
)
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.rule import SigmaLevel, SigmaRule
from sqlalchemy import delete, insert, select

import tianmu
from tianmu.core.errors import KnowledgeBaseError
from tianmu.core.knowledge import ImportReport, KbContext
from tianmu.core.models import utcnow
from tianmu.detect.compiler import (
    CompiledCorrelation,
    CompiledRule,
    UnsupportedRule,
    plan_condition,
    plan_fields,
    required_literals,
    techniques_of,
)
from tianmu.detect.logsource import logsource_problem
from tianmu.store.database import Store
from tianmu.store.schema import kb_sources

__all__ = [
    "STARTER_RULES",
    "RuleBase",
    "RuleSetStatus",
    "SigmaKnowledgeBase",
    "Unusable",
    "active_rule_paths",
    "cache_dir",
    "imported_rule_dirs",
    "load_rule_base",
    "rule_files",
    "rules_status",
]

STARTER_RULES = Path(__file__).resolve().parent / "rules"
"""Our own starter pack (Sigma YAML written for Tianmu), loaded with every rule base."""

_RULE_SUFFIXES = (".yml", ".yaml")
_CACHE_FORMAT = "1"


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


def rule_files(path: Path) -> list[Path]:
    """Sigma YAML files under a path (or the file itself), sorted; hidden folders skipped."""
    if path.is_file():
        return [path]
    found: list[Path] = []
    for directory, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(directory) / name for name in sorted(files) if name.lower().endswith(_RULE_SUFFIXES)
        )
    return found


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
    aliases = {
        name: {
            str(ref.rule.id): str(value) for ref, value in alias.mapping.items() if getattr(ref, "rule", None)
        }
        for name, alias in rule.aliases.aliases.items()
    }
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
                docs, collect_errors=True, source=SigmaRuleLocation(Path(name)), resolve_references=False
            )
        except (SigmaError, ValueError, TypeError, KeyError, AttributeError) as exc:
            base.unusable.append(Unusable(name, "", f"cannot be parsed: {exc}"))
            continue
        for rule in collection.rules:
            parsed.append((name, rule))
        parsed.extend((name, flt) for flt in collection.filters)
    return parsed


def _compile(files: Sequence[Path], display: dict[Path, str]) -> RuleBase:
    base = RuleBase(files=len(files))
    parsed = _parse_files(files, display, base)
    every = [item for _, item in parsed]
    collection = SigmaCollection(every, resolve_references=False)  # type: ignore[call-arg]
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


def _compile_parallel(files: Sequence[Path], display: dict[Path, str]) -> RuleBase:
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


def _digest(files: Sequence[Path], display: dict[Path, str]) -> str:
    sha = hashlib.sha256(f"tianmu {tianmu.__version__} rules {_CACHE_FORMAT}\n".encode())
    for file in files:
        sha.update(display[file].encode() + b"\0")
        try:
            sha.update(hashlib.sha256(file.read_bytes()).digest())
        except OSError:
            sha.update(b"unreadable")
    return sha.hexdigest()


def load_rule_base(paths: Sequence[Path], *, cache_dir: Path | None = None) -> RuleBase:
    """Compile every rule under `paths` (files or folders), through the on-disk cache when given."""
    files: list[Path] = []
    display: dict[Path, str] = {}
    for root in paths:
        if not root.exists():
            raise KnowledgeBaseError(f"{root}: no such rule file or folder")
        for file in rule_files(root):
            files.append(file)
            display[file] = str(file.relative_to(root.parent)) if root.is_dir() else str(file)
    digest = _digest(files, display)
    cached = cache_dir / f"{digest}.pickle" if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            with cached.open("rb") as handle:
                base = pickle.load(handle)
            if isinstance(base, RuleBase):
                base.from_cache = True
                return base
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
            pass  # a damaged or foreign cache file: compile again and replace it
    base = _compile_parallel(files, display)
    base.digest = digest
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
        with os.fdopen(descriptor, "wb") as out:
            pickle.dump(base, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, cached)
    return base


# --- the knowledge base ---------------------------------------------------------------------------------


def _rules_home(home: Path) -> Path:
    return home / "detect" / "sigma"


def cache_dir(home: Path) -> Path:
    return home / "cache" / "detect"


def imported_rule_dirs(store: Store, home: Path) -> list[Path]:
    """Folders of the rule sets imported into this data directory (those still on disk)."""
    with store.connect() as conn:
        names = conn.execute(select(kb_sources.c.name).where(kb_sources.c.kind == "sigma")).scalars().all()
    folders = [_rules_home(home) / _folder_name(name) for name in sorted(names)]
    return [folder for folder in folders if folder.is_dir()]


def _folder_name(source: str) -> str:
    return source.replace("sigma:", "", 1).replace("/", "_") or "rules"


def _looks_like_sigma(file: Path) -> bool:
    try:
        head = file.read_bytes()[:8192].decode("utf-8", errors="replace")
    except OSError:
        return False
    return ("detection:" in head and "logsource:" in head) or "correlation:" in head or "filter:" in head


def _iter_sigma_files(path: Path) -> Iterator[Path]:
    for file in rule_files(path):
        if _looks_like_sigma(file):
            yield file


class SigmaKnowledgeBase:
    """Sigma detection rules (`tianmu kb import` of a rule file or folder such as SigmaHQ's `rules/`)."""

    name = "detect"
    bundle_folders = frozenset({"sigma"})
    default_sources: tuple[str, ...] = ()

    def claims(self, path: Path) -> bool:
        if path.is_file():
            return path.suffix.lower() in _RULE_SUFFIXES and _looks_like_sigma(path)
        if path.is_dir():
            return next(_iter_sigma_files(path), None) is not None
        return False

    def handles_source(self, source: str) -> bool:
        return source.startswith("sigma:")

    def update(self, ctx: KbContext, sources: Sequence[str]) -> list[ImportReport]:
        raise KnowledgeBaseError(
            "Sigma rules have no built-in online source: download a release (e.g. SigmaHQ's rules) and "
            "`tianmu kb import` it"
        )

    def import_path(self, ctx: KbContext, path: Path) -> list[ImportReport]:
        source = f"sigma:{path.resolve().name if path.is_dir() else path.stem}"
        files = list(_iter_sigma_files(path))
        target = _rules_home(ctx.home) / _folder_name(source)
        ctx.note(f"{source}: compiling {len(files)} rule files")
        staging = Path(tempfile.mkdtemp(dir=ctx.home, prefix=".sigma-import-"))
        try:
            root = staging / target.name
            for file in files:
                relative = file.relative_to(path) if path.is_dir() else Path(file.name)
                destination = root / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, destination)
            base = load_rule_base([root], cache_dir=cache_dir(ctx.home)) if files else RuleBase()
            count = len(base.rules) + len(base.correlations)
            if not count:
                raise KnowledgeBaseError(f"{path}: no usable Sigma rule ({len(base.unusable)} unusable)")
            with ctx.store.begin() as conn:
                previous = conn.execute(
                    select(kb_sources.c.digest, kb_sources.c.record_count).where(kb_sources.c.name == source)
                ).first()
                if previous is not None and previous.digest == base.digest and target.is_dir():
                    return [
                        ImportReport(
                            source, "sigma", str(path), "unchanged", record_count=count, digest=base.digest
                        )
                    ]
                if target.exists():
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(root), target)
                row = {
                    "name": source,
                    "kind": "sigma",
                    "origin": str(path),
                    "digest": base.digest,
                    "version": None,
                    "record_count": count,
                    "imported_at": utcnow(),
                    "details": {
                        "files": base.files,
                        "rules": len(base.rules),
                        "correlations": len(base.correlations),
                        "unusable": [[u.path, u.rule, u.reason] for u in base.unusable],
                    },
                }
                conn.execute(delete(kb_sources).where(kb_sources.c.name == source))
                conn.execute(insert(kb_sources).values(**row))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        old = previous.record_count if previous is not None else 0
        status = "imported" if previous is None else "updated"
        errors = [str(u) for u in base.unusable]
        return [
            ImportReport(
                source,
                "sigma",
                str(path),
                status,
                added=max(0, count - old) if previous is not None else count,
                errors=errors,
                record_count=count,
                digest=base.digest,
            )
        ]


def active_rule_paths(
    store: Store | None, home: Path | None, extra: Sequence[Path] | None = None
) -> list[Path]:
    """The rule folders a run uses: the starter pack, then `extra` if given, else every imported set."""
    if extra:
        return [STARTER_RULES, *extra]
    if store is None or home is None:
        return [STARTER_RULES]
    return [STARTER_RULES, *imported_rule_dirs(store, home)]


@dataclass(frozen=True, slots=True)
class RuleSetStatus:
    """One row of `tianmu rules status`."""

    name: str
    path: str
    rules: int
    correlations: int
    unusable: list[Unusable]
    files: int


def rules_status(
    store: Store | None, home: Path | None, extra: Sequence[Path] | None = None
) -> list[RuleSetStatus]:
    """Each active rule set, compiled (through the cache), with its unusable rules and why."""
    rows: list[RuleSetStatus] = []
    cache = cache_dir(home) if home is not None else None
    for path in active_rule_paths(store, home, extra):
        base = load_rule_base([path], cache_dir=cache)
        name = "starter" if path == STARTER_RULES else path.name
        rows.append(
            RuleSetStatus(name, str(path), len(base.rules), len(base.correlations), base.unusable, base.files)
        )
    return rows
