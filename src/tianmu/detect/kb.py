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
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select

import tianmu
from tianmu.core.errors import KnowledgeBaseError
from tianmu.core.models import utcnow
from tianmu.detect.compiler import RuleBase, Unusable
from tianmu.store.knowledge import ImportMode, ImportReport, KbContext, kept_note, removal_refusal
from tianmu.store.schema import kb_sources

if TYPE_CHECKING:
    from tianmu.store.database import Store

__all__ = [
    "STARTER_RULES",
    "RuleBase",
    "RuleSetStatus",
    "SigmaKnowledgeBase",
    "Unusable",
    "active_rule_paths",
    "cache_dir",
    "import_rule_set",
    "imported_rule_dirs",
    "load_rule_base",
    "rule_files",
    "rules_status",
]

STARTER_RULES = Path(__file__).resolve().parent / "rules"
"""Our own starter pack (Sigma YAML written for Tianmu), loaded with every rule base."""

_RULE_SUFFIXES = (".yml", ".yaml")
_CACHE_FORMAT = "4"  # 4: patterns checked against RE2 at compile time


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


def _file_digests(files: Sequence[Path], display: dict[Path, str]) -> dict[str, str]:
    digests: dict[str, str] = {}
    for file in files:
        try:
            digests[display[file]] = hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError:
            digests[display[file]] = "unreadable"
    return digests


def _digest(file_digests: dict[str, str]) -> str:
    sha = hashlib.sha256(f"tianmu {tianmu.__version__} rules {_CACHE_FORMAT}\n".encode())
    for name, digest in file_digests.items():
        sha.update(f"{name}\0{digest}\n".encode())
    return sha.hexdigest()


def _load_cached(cached: Path | None) -> RuleBase | None:
    if cached is None or not cached.is_file():
        return None
    try:
        with cached.open("rb") as handle:
            base = pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ImportError):
        return None  # a damaged or foreign cache file: compile again and replace it
    return base if isinstance(base, RuleBase) else None


def _store_cached(cached: Path, base: RuleBase) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
    with os.fdopen(descriptor, "wb") as out:
        pickle.dump(base, out, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, cached)


def _load_rule_set(root: Path, cache_dir: Path | None) -> RuleBase:
    """One rule file or folder, compiled or from its cache entry (correlations resolve within it)."""
    if not root.exists():
        raise KnowledgeBaseError(f"{root}: no such rule file or folder")
    files = rule_files(root)
    display = {file: str(file.relative_to(root.parent)) if root.is_dir() else str(file) for file in files}
    file_digests = _file_digests(files, display)
    digest = _digest(file_digests)
    cached = cache_dir / f"{digest}.pickle" if cache_dir else None
    base = _load_cached(cached)
    if base is not None:
        base.from_cache = True
        return base
    # pySigma (through translate): heavy, optional on a warm start, needed only to compile rules.
    from tianmu.detect.translate import compile_files

    # The last compiled version of this set (by its name): files whose content did not change keep
    # their compiled rules, so a rule-set update recompiles only what changed.
    latest = (
        cache_dir / f"latest-{hashlib.sha256(str(root.name).encode()).hexdigest()[:16]}"
        if cache_dir
        else None
    )
    previous = _previous(latest, cache_dir)
    reusable = {
        name
        for name, sha in file_digests.items()
        if previous is not None and previous.file_digests.get(name) == sha
    }
    if previous is None or any(_needs_one_collection(file) for file in files) or not reusable:
        base = compile_files(files, display)
    else:
        changed = [file for file in files if display[file] not in reusable]
        base = compile_files(changed, display) if changed else RuleBase()
        base.rules.extend(rule for rule in previous.rules if rule.path in reusable)
        base.unusable.extend(
            u for u in previous.unusable if u.path.rsplit(":", 1)[0] in reusable or u.path in reusable
        )
        order = {name: index for index, name in enumerate(file_digests)}
        base.rules.sort(key=lambda rule: order.get(rule.path, len(order)))
    base.files = len(files)
    base.digest = digest
    base.file_digests = file_digests
    if cached is not None and latest is not None:
        _store_cached(cached, base)
        if previous is not None and previous.digest != digest:
            (cached.parent / f"{previous.digest}.pickle").unlink(missing_ok=True)
        latest.write_text(digest)
    return base


def _previous(latest: Path | None, cache_dir: Path | None) -> RuleBase | None:
    if latest is None or cache_dir is None or not latest.is_file():
        return None
    try:
        name = latest.read_text().strip()
    except OSError:
        return None
    return _load_cached(cache_dir / f"{name}.pickle") if re.fullmatch(r"[0-9a-f]{64}", name) else None


def _needs_one_collection(file: Path) -> bool:
    """Correlations and filters refer to rules of other files: such sets are compiled whole."""
    try:
        text = file.read_bytes()
    except OSError:
        return False
    return b"\ncorrelation:" in text or b"\nfilter:" in text or text.startswith((b"correlation:", b"filter:"))


def load_rule_base(paths: Sequence[Path], *, cache_dir: Path | None = None) -> RuleBase:
    """Compile every rule under `paths` (files or folders), through the on-disk cache when given.

    Each path is one rule set with its own cache entry, so the starter pack and an imported set are
    cached apart and `tianmu kb import` leaves a warm cache for the next `tianmu detect`.
    """
    parts = [_load_rule_set(root, cache_dir) for root in paths]
    if len(parts) == 1:
        return parts[0]
    base = RuleBase(files=sum(p.files for p in parts), from_cache=all(p.from_cache for p in parts))
    for part in parts:
        base.rules.extend(part.rules)
        base.correlations.extend(part.correlations)
        base.unusable.extend(part.unusable)
    base.digest = hashlib.sha256("".join(p.digest for p in parts).encode()).hexdigest()
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
        return [import_rule_set(ctx, path)]


def _ids_by_file(base: RuleBase, root_name: str) -> dict[str, set[str]]:
    """Rule ids (usable or not) of each rule file of a compiled set, by path relative to the set."""
    prefix = root_name + "/"
    found: dict[str, set[str]] = {}
    for rule_id, file in _entries(base):
        found.setdefault(file.removeprefix(prefix), set()).add(rule_id)
    for unusable in base.unusable:
        if unusable.rule:  # a file that could not be read at all names no rule
            found.setdefault(unusable.path.removeprefix(prefix), set()).add(unusable.rule)
    return found


def _entries(base: RuleBase) -> list[tuple[str, str]]:
    """(id, rule file) of each usable rule and correlation: the records of a Sigma source."""
    return [(r.id, r.path) for r in base.rules] + [(c.id, c.path) for c in base.correlations]


def _record_ids(base: RuleBase) -> set[str]:
    return {rule_id for rule_id, _ in _entries(base)}


def _stage(files: Sequence[Path], path: Path, root: Path) -> set[str]:
    """Copy the import's rule files under `root`; their paths relative to it."""
    relatives: set[str] = set()
    for file in files:
        relative = file.relative_to(path) if path.is_dir() else Path(file.name)
        destination = root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, destination)
        relatives.add(relative.as_posix())
    return relatives


def _merge_stored(target: Path, root: Path, incoming: set[str], cache: Path) -> tuple[RuleBase, list[str]]:
    """A merge: the stored files the import does not replace are copied beside its own, then compiled
    (the stored set's compiled rules are reused for every unchanged file).

    Rules are keyed by id: a stored file is replaced by the import's file of the same path, or dropped
    when every rule it holds has come back in other files of the import (a rule moved). A stored file
    that shares only some of its ids with the import is kept (a file is the unit stored), and said."""
    for file in rule_files(target):
        destination = root / file.relative_to(target)
        if file.relative_to(target).as_posix() not in incoming:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, destination)
    merged = load_rule_base([root], cache_dir=cache)
    ids = _ids_by_file(merged, root.name)
    new_ids = {rule_id for relative in incoming for rule_id in ids.get(relative, ())}
    notes: list[str] = []
    superseded = []
    for relative, held in ids.items():
        if relative in incoming or not held & new_ids or not (root / relative).is_file():
            continue
        if held <= new_ids:
            superseded.append(relative)
        else:
            shared = ", ".join(sorted(held & new_ids)[:3])
            notes.append(f"{relative}: kept: it also holds rules of this import ({shared}), now twice")
    for relative in superseded:
        (root / relative).unlink()
    if superseded:
        merged = load_rule_base([root], cache_dir=cache)
    return merged, notes


def import_rule_set(ctx: KbContext, path: Path, mode: ImportMode | None = None) -> ImportReport:
    """`tianmu kb import` of a Sigma rule file or folder into its source `sigma:<name>`.

    `mode` (default: the context's): a merge adds and updates rules by id and removes none, `--replace`
    makes the import the whole source, an official copy that would remove most of it is refused."""
    mode = mode or ctx.import_mode
    source = f"sigma:{path.resolve().name if path.is_dir() else path.stem}"
    files = list(_iter_sigma_files(path))
    target = _rules_home(ctx.home) / _folder_name(source)
    cache = cache_dir(ctx.home)
    ctx.note(f"{source}: compiling {len(files)} rule files")
    staging = Path(tempfile.mkdtemp(dir=ctx.home, prefix=".sigma-import-"))
    try:
        root = staging / target.name
        incoming = _stage(files, path, root)
        # The stored set first, from its cache entry: compiling another version of the set replaces it.
        stored = target.is_dir()
        before = load_rule_base([target], cache_dir=cache) if stored else RuleBase()
        notes: list[str] = []
        if not files:
            base = RuleBase()
        elif stored and mode is ImportMode.MERGE:
            base, notes = _merge_stored(target, root, incoming, cache)
        else:
            base = load_rule_base([root], cache_dir=cache)
        own = _record_ids_of(base, root.name, incoming)
        if not own:
            unusable = sum(
                u.path.removeprefix(root.name + "/").split(":")[0] in incoming for u in base.unusable
            )
            raise KnowledgeBaseError(f"{path}: no usable Sigma rule ({unusable} unusable)")
        old_ids, new_ids = _record_ids(before), _record_ids(base)
        count, kept = len(new_ids), len(new_ids - own)
        with ctx.store.begin() as conn:
            previous = conn.execute(
                select(kb_sources.c.digest, kb_sources.c.record_count).where(kb_sources.c.name == source)
            ).first()
            if previous is not None and previous.digest == base.digest and stored:
                return ImportReport(
                    source, "sigma", str(path), "unchanged", record_count=count, digest=base.digest
                )
            refusal = removal_refusal(source, mode, len(old_ids), len(old_ids & new_ids), ctx.limits)
            if refusal is not None:
                gone = sorted(old_ids - new_ids)
                more = f" and {len(gone) - 5} more" if len(gone) > 5 else ""
                return ImportReport(
                    source,
                    "sigma",
                    str(path),
                    "refused",
                    errors=[f"{refusal}; rules it would remove: {', '.join(gone[:5])}{more}"],
                    record_count=len(old_ids),
                )
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
                    "mode": str(mode),
                    "kept": kept,
                },
            }
            conn.execute(delete(kb_sources).where(kb_sources.c.name == source))
            conn.execute(insert(kb_sources).values(**row))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # A rule is updated when the file holding it changed content (wherever it now lives).
    was = {rule_id: before.file_digests.get(file) for rule_id, file in _entries(before)}
    updated = {i for i, file in _entries(base) if i in was and was[i] != base.file_digests.get(file)}
    return ImportReport(
        source,
        "sigma",
        str(path),
        "imported" if previous is None else "updated",
        added=len(new_ids - old_ids),
        updated=len(updated),
        removed=len(old_ids - new_ids),
        errors=[str(u) for u in base.unusable] + notes + kept_note(source, mode, kept),
        record_count=count,
        digest=base.digest,
    )


def _record_ids_of(base: RuleBase, root_name: str, relatives: set[str]) -> set[str]:
    """Ids of the usable rules and correlations of a set that sit in the given files."""
    prefix = root_name + "/"
    return {rule_id for rule_id, file in _entries(base) if file.removeprefix(prefix) in relatives}


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
