"""`assess`: a directory, a repository checkout, a mounted system or one file, through every engine.

The road of a path: collect once (one walk, each file classified once) → the inventory → the engines
listed in `AssessOptions.engines` (`tianmu.road.engines.ENGINES`) → finish (annotate, save, situation).
The CLI, the API and the job runners call this; none of them holds assessment logic of its own.

A job stores a consistent result or nothing. Unreadable files are the assessment's errors, not its
failure: the rest is assessed and saved. Only a target that gave nothing at all — the inventory read
none of its files and failed on some (or the target itself could not be listed), and no engine found
anything — is refused, with `UnreadableTarget`, *before* anything is saved (`refuse_unreadable`, which
the CLI sets: it exits 2). Log lines that no reader parsed are no inventory errors and never count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.assets.engine import InventoryEngine
from tianmu.assets.registry import default_extractors, forced_extractor
from tianmu.core.engine import FileClass, JobContext
from tianmu.core.errors import InputError
from tianmu.core.models import Assessment, utcnow
from tianmu.core.walk import WalkRules
from tianmu.malware.rulecache import RuleCache
from tianmu.road.collect import Classifier, collect
from tianmu.road.engines import ENGINES, EngineSetup, JobLimits, build_engines
from tianmu.road.finish import FinishOptions, finish
from tianmu.road.places import key_on_files
from tianmu.road.run import RoadRun, run_engines
from tianmu.road.targets import asset_for_path
from tianmu.store.database import Store
from tianmu.store.knowledge import kb_status
from tianmu.store.repository import SaveHook
from tianmu.vulns.engine import sort_findings

__all__ = ["ENGINES", "AssessOptions", "UnreadableTarget", "assess", "asset_for_path"]

ProgressCallback = Callable[[str], None]
# `path:line: message` or `path: message`, as located errors render (`InputError.__str__`).
_ERROR_PATH = re.compile(r"^(.+?)(?::\d+)?: ")


class UnreadableTarget(InputError):
    """The target gave nothing to assess; nothing was stored. `errors` are the located reasons."""

    def __init__(self, message: str, path: str, errors: Sequence[str]) -> None:
        super().__init__(message, path)
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class AssessOptions:
    tenant: str = "default"
    engines: tuple[str, ...] = field(default_factory=lambda: tuple(ENGINES))
    save: bool = True
    """False for read-only runs (`tianmu inventory`/`vulns` as pure queries)."""
    home: Path | None = None
    """The data directory (`Settings.home`), for engines that keep files there."""
    save_hook: SaveHook | None = None
    """Runs inside the transaction that stores the assessment (see `save_assessment`)."""
    workers: int | None = None
    """Processes for the log pass (None: by the size of the logs)."""
    rules: RuleCache | None = None
    """Loaded malware rule sets kept by a process that runs many jobs (`tianmu worker`, `serve`)."""
    walk: WalkRules = field(default_factory=WalkRules)
    """What the walk leaves out besides pseudo file systems: `--exclude`, `--cross-filesystems`."""
    file_format: str | None = None
    """Read the one file named with this extractor whatever its name (`tianmu vulns FILE --format`)."""
    refuse_unreadable: bool = False
    """Raise `UnreadableTarget` (and store nothing) when the target gave nothing at all (module
    docstring); False stores that empty assessment with its errors, as a job's record of the attempt."""
    limits: JobLimits = field(default_factory=JobLimits)
    """The readers' and the detection engine's limits (`JobLimits.from_settings` at the edge)."""


def assess(
    store: Store,
    path: Path,
    options: AssessOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> Assessment:
    """Inventory `path`, run the engines, store the results, and return what was found.

    Raises InputError when the path does not exist. Unreadable or malformed files inside it are not
    errors of the assessment: they are listed in `Assessment.errors` and the rest is assessed.
    """
    options = options or AssessOptions()
    if not path.exists():
        raise InputError("no such file or directory", str(path))
    started = utcnow()
    asset = asset_for_path(path, options.tenant)
    if options.file_format is not None and path.is_dir():
        raise InputError("--format names the format of one file: give a file, not a folder", str(path))
    inventory = InventoryEngine(
        [forced_extractor(options.file_format)]
        if options.file_format
        else default_extractors(sbom_limits=options.limits.sbom)
    )
    setup = EngineSetup(store, options.home, rules=options.rules, limits=options.limits)
    engines = build_engines(setup, options.engines)
    # Only files some engine reads are kept: `vulns /` holds its package files, not every file.
    wanted = frozenset().union(*(engine.requirements.files for engine in [inventory, *engines]))
    if any(engine.requirements.events for engine in engines):
        wanted |= {FileClass.LOG}
    collected = collect(path, Classifier(inventory.claims), options.walk, wanted)
    job = JobContext(asset=asset, root=path, home=options.home, progress=progress)
    run = run_engines(
        [inventory, *engines], collected.files, job, workers=options.workers, read_limits=options.limits.read
    )
    merged = run.merged()
    errors = list(dict.fromkeys([*collected.errors, *merged.errors]))
    if options.refuse_unreadable:
        refused = _nothing_read(run, inventory.name, bool(collected.files), bool(collected.errors))
        if refused is not None:
            raise UnreadableTarget(refused, str(path), errors)
    key_on_files(merged.findings, path)  # a log line or sample is one finding whichever root was assessed
    notes = [*collected.notes(), *merged.notes]
    result = Assessment(
        target=str(path),
        asset=asset,
        started=started,
        components=merged.components,
        unresolved=merged.unresolved,
        findings=sort_findings(merged.findings),
        errors=errors,
        notes=notes,
        files_read=run.results[inventory.name].files_read,  # inventory files, as reports say
        knowledge_bases=[status.as_dict() for status in kb_status(store)],
        engines=list(options.engines),
    )
    result.finished = utcnow()
    finish(store, [result], FinishOptions(save=options.save, home=options.home, save_hook=options.save_hook))
    return result


def _nothing_read(run: RoadRun, inventory: str, any_file: bool, walk_failed: bool) -> str | None:
    """Why the target gave nothing at all, or None when there is a result to store."""
    if any(result.findings for result in run.results.values()):
        return None  # other engines found things: the inventory's failures are errors of a result
    read = run.results[inventory]
    if read.files_read:
        return None
    if read.errors:
        files = {match.group(1) if (match := _ERROR_PATH.match(e)) else e for e in read.errors}
        return f"none of the {len(files)} inventory file(s) could be read"
    if walk_failed and not any_file:
        return "nothing could be read"
    return None
