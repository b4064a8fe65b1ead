"""The composition root's list of engines: which engines a path assessment runs, and how each is built.

Every capability exposes its engine in the core shape (`tianmu.core.engine`); this is the one place
that knows them all and builds them with their collaborators (the store, the data directory, loaded
rule sets, the job's limits). `ENGINES` is the order their results are reported in (and the names
`--engine` takes).

`JobLimits` are the limits of one job's reading and detection. They come from the settings the CLI, the
worker or the service read at the edge (`JobLimits.from_settings`: `TIANMU_LIMIT_*`), so `assess`,
`detect` and the jobs bound the same inputs the same way; a job built without them gets the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.assets.sbom import SbomLimits
from tianmu.core.config import Settings
from tianmu.core.engine import Engine, EventEngine
from tianmu.core.errors import InputError
from tianmu.detect.engine import DetectLimits
from tianmu.detect.events import DetectionEngine
from tianmu.detect.kb import active_rule_paths, cache_dir, load_rule_base
from tianmu.intel.events import IntelEngine
from tianmu.malware.engine import MalwareEngine
from tianmu.malware.rulecache import RuleCache
from tianmu.readers.limits import ReadLimits
from tianmu.store.database import Store
from tianmu.vulns.engine import VulnEngine

__all__ = ["ENGINES", "EngineSetup", "JobLimits", "build_engines", "detection_engine", "malware_engine"]

AnyEngine = Engine | EventEngine


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What one job reads and keeps at most; each limit hit is reported, never a crash."""

    read: ReadLimits = field(default_factory=ReadLimits)
    """Every log reader's limits (line size, decompressed size and ratio, EVTX spool, zip members)."""
    detect: DetectLimits = field(default_factory=DetectLimits)
    """The detection engine's (findings per rule per file, correlation sightings per pass)."""
    sbom: SbomLimits = field(default_factory=SbomLimits)
    """The SBOM readers' (components per SBOM, nesting)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> JobLimits:
        detect = DetectLimits(
            max_findings_per_rule=settings.limit_findings_per_rule, max_sightings=settings.limit_sightings
        )
        sbom = SbomLimits(max_components=settings.limit_sbom_components)
        return cls(read=ReadLimits.from_settings(settings), detect=detect, sbom=sbom)


@dataclass(frozen=True, slots=True)
class EngineSetup:
    """What engines are built with: the store, the data directory, and the loaded malware rule sets of
    a process that runs many jobs (`tianmu worker`, `tianmu serve` keep one `RuleCache` for their
    lifetime; None: the engine loads them for this job)."""

    store: Store
    home: Path | None
    rules: RuleCache | None = None
    limits: JobLimits = field(default_factory=JobLimits)
    """The job's limits; the detection engine is built with `limits.detect`."""


def malware_engine(setup: EngineSetup) -> MalwareEngine:
    return MalwareEngine(setup.store, setup.home, rules=setup.rules)


def detection_engine(setup: EngineSetup, extra_rules: Sequence[Path] | None = None) -> DetectionEngine:
    """The starter pack and every imported rule set (or the `extra_rules` named for this run)."""
    paths = active_rule_paths(setup.store, setup.home, extra_rules)
    base = load_rule_base(paths, cache_dir=cache_dir(setup.home) if setup.home is not None else None)
    return DetectionEngine(base, imported_sets=len(paths) - 1, limits=setup.limits.detect)


ENGINES: dict[str, Callable[[EngineSetup], AnyEngine]] = {
    "vulnerability": lambda setup: VulnEngine(setup.store),
    "malware": malware_engine,
    "intel": lambda setup: IntelEngine(setup.store, setup.home),
    "detection": detection_engine,
}


def build_engines(setup: EngineSetup, names: Sequence[str]) -> list[AnyEngine]:
    unknown = [name for name in names if name not in ENGINES]
    if unknown:
        raise InputError(f"unknown engine(s): {', '.join(unknown)} (known: {', '.join(ENGINES)})")
    return [ENGINES[name](setup) for name in names]
