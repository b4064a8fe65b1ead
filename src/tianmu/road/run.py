"""Run a job's engines over what the collector found, in the order their requirements give.

1. engines that produce inputs for others (the inventory makes components);
2. batch engines over files and components (vulnerabilities, malware);
3. one event pass over the log files for every event engine (detection, intelligence);
4. batch engines over the findings of steps 1-2 (intelligence over the malware scanner's hashes and
   the peers other engines saw; the event pass's findings came from the very events they rest on).

Results are reported in the order the engines were listed, whatever order they ran in, so a report
reads the same; within one engine, one finding per fingerprint (an engine that matched the same thing
in a log and in an earlier finding reports it once, the log's sighting first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tianmu.core.engine import (
    CollectedFile,
    Engine,
    EngineResult,
    EventEngine,
    FileClass,
    InputKind,
    Inputs,
    JobContext,
)
from tianmu.core.models import Finding
from tianmu.road.events import run_event_pass

__all__ = ["RoadRun", "run_engines"]

AnyEngine = Engine | EventEngine


@dataclass(slots=True)
class RoadRun:
    """Each engine's result, by name, in the order the engines were listed."""

    results: dict[str, EngineResult] = field(default_factory=dict)
    inputs: Inputs = field(default_factory=Inputs)

    def merged(self) -> EngineResult:
        total = EngineResult()
        for result in self.results.values():
            total.extend(result)
        return total


def run_engines(
    engines: Sequence[AnyEngine],
    files: Sequence[CollectedFile],
    job: JobContext,
    *,
    workers: int | None = None,
    targets: Sequence[str] = (),
) -> RoadRun:
    inputs = Inputs(files=files, targets=list(targets))
    results: dict[str, EngineResult] = {engine.name: EngineResult() for engine in engines}
    producers = [e for e in engines if isinstance(e, Engine) and e.requirements.produces]
    for engine in producers:
        _batch(engine, inputs, job, results)
    consumers = [
        e
        for e in engines
        if isinstance(e, Engine) and e not in producers and InputKind.FINDINGS not in e.requirements.inputs
    ]
    for engine in consumers:
        _batch(engine, inputs, job, results)
    event_engines = [e for e in engines if isinstance(e, EventEngine)]
    if event_engines:
        logs = [file for file in files if FileClass.LOG in file.classes]
        passed = run_event_pass(logs, event_engines, job, workers=workers)
        for event_engine, result in zip(event_engines, passed, strict=True):
            results[event_engine.name].extend(result)
    late = [e for e in engines if isinstance(e, Engine) and InputKind.FINDINGS in e.requirements.inputs]
    for late_engine in late:
        _batch(late_engine, inputs, job, results)
    for result in results.values():
        result.findings = _unique(result)
    return RoadRun(results, inputs)


def _batch(engine: Engine, inputs: Inputs, job: JobContext, results: dict[str, EngineResult]) -> None:
    result = engine.analyse(inputs, job)
    results[engine.name].extend(result)
    inputs.components.extend(result.components)
    inputs.unresolved.extend(result.unresolved)
    inputs.services.extend(result.services)
    if InputKind.FINDINGS not in engine.requirements.inputs:
        inputs.findings.extend(result.findings)


def _unique(result: EngineResult) -> list[Finding]:
    seen: set[str] = set()
    unique: list[Finding] = []
    for finding in result.findings:
        if finding.fingerprint not in seen:
            seen.add(finding.fingerprint)
            unique.append(finding)
    return unique
