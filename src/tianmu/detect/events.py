"""The detection engine of the road: every event of the one parse pass, against the active rule sets.

The road parses each log once and hands each event to every event engine; this one runs the compiled
Sigma rules over the streams that are logs (not generic data records, not plain text), keeps the
sightings its correlations need, and correlates them when the pass is done. Sinks may run in forked
workers, one per group of files: a sink's `partial()` is its `DetectResult`, and `combine` merges the
partials and correlates across all of them, exactly as one process would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tianmu.core.engine import EngineResult, EventStream, JobContext, Requirements
from tianmu.core.models import Event
from tianmu.detect.engine import DetectLimits, Detector, DetectResult, finish_results, scan_events
from tianmu.detect.kb import RuleBase
from tianmu.readers._common import MAX_ERRORS, is_stop

__all__ = ["DetectionEngine", "DetectionSink"]

_NOT_LOGS = frozenset({"text", "unknown"})


def _relative(text: str, base: Path | None) -> str:
    """A `path:line: reason` message with the target root taken off the front."""
    if base is None:
        return text
    prefix = str(base).rstrip("/") + "/"
    return text[len(prefix) :] if text.startswith(prefix) else text


class DetectionEngine:
    """Compiled rules over the events of the pass; `limits` (default `DetectLimits()`) bound every sink.

    The sinks share this engine's `Detector`, which holds the limits: forked workers inherit it, so a
    worker's pass is bounded exactly as the parent's."""

    name = "detection"
    requirements = Requirements(knowledge=frozenset({"detect"}), events=True)

    def __init__(self, base: RuleBase, *, imported_sets: int = 0, limits: DetectLimits | None = None) -> None:
        self.base = base
        self.detector = Detector(base, limits)
        self.imported_sets = imported_sets

    def open(self, job: JobContext) -> DetectionSink:
        return DetectionSink(self.detector, job)

    def combine(self, partials: Sequence[Any], job: JobContext) -> EngineResult:
        total = finish_results(self.detector, partials, job.asset)
        base_dir = _base_dir(job.root)
        extra = (
            f" + {self.imported_sets} imported rule sets" if self.imported_sets else "; no rule set imported"
        )
        note = (
            f"detection: {total.stats.events} events in {total.stats.files} log files against "
            f"{len(self.base.rules)} rules and {len(self.base.correlations)} correlations "
            f"(starter pack{extra})"
        )
        return EngineResult(
            findings=total.findings,
            errors=[_relative(error, base_dir) for error in total.stats.errors],
            notes=[note, *total.notes(self.detector.limits, base_dir)],
        )


class DetectionSink:
    """One pass of events through the detector, into one `DetectResult`."""

    def __init__(self, detector: Detector, job: JobContext) -> None:
        self.detector = detector
        self.job = job
        self.root = _base_dir(job.root)
        self.result = DetectResult()
        self._started = detector.evaluations

    def begin(self, stream: EventStream) -> bool:
        # Rules are written for logs: generic JSON/CSV data found in a folder walk would only feed them
        # noise, and a text file no reader understands has no fields to match.
        return stream.format not in _NOT_LOGS and not stream.generic

    def add(self, event: Event) -> None:
        if event.source_type == "text":
            return  # the text of a line the reader could not parse: no fields for a rule to match
        scan_events(self.detector, (event,), self.job.asset, self.root, self.result)

    def end(self, stream: EventStream, events: int, errors: Sequence[str]) -> None:
        stats = self.result.stats
        if stream.format != "unreadable":
            stats.files += 1
        stats.events += events
        stats.malformed_count += len(errors)
        room = max(0, MAX_ERRORS - len(stats.errors))
        stats.errors.extend(errors[:room])
        # Why a stream stopped (damage, a limit) is never hidden behind earlier malformed lines.
        stops = [error for error in errors[room:] if is_stop(error)]
        stats.errors.extend(stops)
        stats.stops.extend(stops)

    def partial(self) -> DetectResult:
        part, self.result = self.result, DetectResult()
        part.evaluations = self.detector.evaluations - self._started
        self._started = self.detector.evaluations
        return part


def _base_dir(root: Path | None) -> Path | None:
    if root is None:
        return None
    return root if root.is_dir() else root.parent
