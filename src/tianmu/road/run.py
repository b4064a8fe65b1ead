"""Run a job's engines over what the collector found, in the order their requirements give.

1. engines that produce inputs for others (the inventory makes components);
2. batch engines over files and components (vulnerabilities, malware);
3. one event pass over the log files for every event engine (detection, intelligence);
4. batch engines over the findings of steps 1-2 (intelligence over the malware scanner's hashes and
   the peers other engines saw; the event pass's findings came from the very events they rest on).

Results are reported in the order the engines were listed, whatever order they ran in, so a report
reads the same. An engine that is both (intelligence) reports a thing its event part already matched
only once: the log's sighting, with its line and excerpt.

No engine's failure costs the others their results (`tianmu.road.isolation`): an engine that raises is
reported in the errors (`engine NAME failed: Type: message`) and the job goes on; a failing event or
stream costs that record only.
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
from tianmu.readers.limits import ReadLimits
from tianmu.road.events import run_event_pass
from tianmu.road.isolation import GuardedEventEngine, describe, engine_failure

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
    read_limits: ReadLimits | None = None,
) -> RoadRun:
    """Every engine's result; `read_limits` bound the log pass (`ReadLimits()` by default)."""
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
        consumed = {path for result in results.values() for path in result.consumed}
        logs = [file for file in files if FileClass.LOG in file.classes and file.relpath not in consumed]
        guarded = [GuardedEventEngine(engine) for engine in event_engines]
        try:
            passed = run_event_pass(logs, guarded, job, workers=workers, limits=read_limits)
        except Exception as exc:
            # The pass itself failed (a reader, a worker): no event engine's result is whole, the
            # batch engines' results are kept.
            failure = f"the log pass failed: {describe(exc)}"
            passed = [EngineResult(errors=[failure]) for _ in event_engines]
        for event_engine, result in zip(event_engines, passed, strict=True):
            results[event_engine.name].extend(result)
    late = [e for e in engines if isinstance(e, Engine) and InputKind.FINDINGS in e.requirements.inputs]
    for late_engine in late:
        _batch(late_engine, inputs, job, results, already=results[late_engine.name].findings)
    return RoadRun(results, inputs)


def _batch(
    engine: Engine,
    inputs: Inputs,
    job: JobContext,
    results: dict[str, EngineResult],
    *,
    already: Sequence[Finding] = (),
) -> None:
    try:
        result = engine.analyse(inputs, job)
    except Exception as exc:
        # Whatever an engine raises (a bug, a hostile input it did not expect) is its failure alone:
        # its result is not whole, so it adds none, and the other engines' results are kept.
        results[engine.name].errors.append(engine_failure(engine.name, exc))
        return
    if already:
        # What the engine's event part reported (with its line and excerpt) is not reported again.
        seen = {finding.fingerprint for finding in already}
        result.findings = [finding for finding in result.findings if finding.fingerprint not in seen]
    results[engine.name].extend(result)
    inputs.components.extend(result.components)
    inputs.unresolved.extend(result.unresolved)
    inputs.services.extend(result.services)
    if InputKind.FINDINGS not in engine.requirements.inputs:
        inputs.findings.extend(result.findings)
