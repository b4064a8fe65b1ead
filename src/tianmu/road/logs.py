"""The road of log jobs: `tianmu detect FILES` and `tianmu intel match FILES`.

Both read logs the user named (every file of a named folder is a candidate; content decides), run one
engine over the events, and end in `finish` like every job: the findings are annotated, stored as an
assessment of the path's asset, and join the tenant's incidents and risk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.core.engine import JobContext, Progress
from tianmu.core.errors import InputError
from tianmu.core.models import Assessment, Finding, utcnow
from tianmu.core.walk import WalkRules, refuse_named
from tianmu.detect.engine import DetectResult, detect_paths
from tianmu.detect.events import DetectionEngine
from tianmu.intel.events import IntelEngine, has_indicators
from tianmu.road.collect import Classifier, collect
from tianmu.road.engines import EngineSetup, JobLimits, detection_engine
from tianmu.road.events import run_event_pass
from tianmu.road.finish import FinishOptions, finish
from tianmu.road.isolation import GuardedEventEngine
from tianmu.road.places import key_on_files
from tianmu.road.targets import asset_for_path
from tianmu.store.database import Store

__all__ = ["DetectJob", "IntelMatchResult", "run_detect", "run_intel_match"]


@dataclass(frozen=True, slots=True)
class DetectJob:
    paths: Sequence[Path]
    tenant: str = "default"
    home: Path | None = None
    rules: Sequence[Path] | None = None
    """Rule files or folders to use instead of the imported sets (the starter pack always runs)."""
    fmt: str | None = None
    field_map: dict[str, str] | None = None
    workers: int | None = None
    save: bool = True
    walk: WalkRules = field(default_factory=WalkRules)
    """What the walk of folders leaves out besides pseudo file systems (`--exclude`)."""
    limits: JobLimits = field(default_factory=JobLimits)
    """The readers' and the detector's limits (`JobLimits.from_settings` at the edge)."""


def run_detect(
    store: Store, job: DetectJob, engine: DetectionEngine | None = None, *, progress: Progress | None = None
) -> DetectResult:
    """The detector over the named logs, then finish (`engine`: one already built from `job.rules`,
    with `job.limits.detect`)."""
    _exist(job.paths)
    engine = engine or detection_engine(EngineSetup(store, job.home, limits=job.limits), job.rules)
    root = job.paths[0] if len(job.paths) == 1 and job.paths[0].is_dir() else None
    asset = asset_for_path(job.paths[0] if len(job.paths) == 1 else Path.cwd(), job.tenant)
    started = utcnow()
    result = detect_paths(
        engine.detector,
        list(job.paths),
        asset,
        root=root,
        fmt=job.fmt,
        field_map=job.field_map,
        workers=job.workers,
        progress=progress,
        walk=job.walk,
        read_limits=job.limits.read,
    )
    if result.stats.files or result.stats.events:
        # Display paths are relative to the folder named, else as typed (from here): keyed on the file.
        key_on_files(result.findings, root if root is not None else Path.cwd())
        assessment = Assessment(
            target=" ".join(str(path) for path in job.paths),
            asset=asset,
            started=started,
            finished=utcnow(),
            findings=result.findings,
            errors=list(result.stats.errors),
            notes=[*result.walk_notes, *result.limit_notes],
            engines=["detection"],
        )
        finish(store, [assessment], FinishOptions(save=job.save, home=job.home))
    return result


@dataclass(slots=True)
class IntelMatchResult:
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_intel_match(
    store: Store,
    paths: Sequence[Path],
    *,
    tenant: str = "default",
    home: Path | None = None,
    save: bool = True,
    progress: Progress | None = None,
    limits: JobLimits | None = None,
) -> IntelMatchResult:
    """Every file under the paths, as logs (text when no reader knows it), against the intel base."""
    _exist(paths)
    if not has_indicators(store):
        raise InputError("no threat-intelligence feed imported: run `tianmu intel import FEED` first")
    engine = IntelEngine(store, home)
    read_limits = (limits or JobLimits()).read
    found = IntelMatchResult()
    assessments = []
    for path in paths:
        started = utcnow()
        asset = asset_for_path(path, tenant)
        job = JobContext(asset, root=path, home=home, progress=progress)
        files = collect(path, Classifier(_no_package, all_logs=True)).files
        (result,) = run_event_pass(files, [GuardedEventEngine(engine)], job, limits=read_limits)
        key_on_files(result.findings, path)  # the same line is one finding for `assess` and here
        found.findings += result.findings
        found.errors += result.errors
        assessments.append(
            Assessment(str(path), asset, started, utcnow(), findings=result.findings, engines=["intel"])
        )
    finish(store, assessments, FinishOptions(save=save, home=home))
    return found


def _no_package(_path: Path) -> bool:
    return False


def _exist(paths: Sequence[Path]) -> None:
    """Every path named exists and may be read: a FIFO, a device or a file of `/proc` named on its own
    would block the reader for ever, so it is refused before anything is opened."""
    for path in paths:
        if not path.exists():
            raise InputError("no such file or directory", str(path))
        refused = refuse_named(path)
        if refused is not None:
            raise InputError(refused, str(path))
