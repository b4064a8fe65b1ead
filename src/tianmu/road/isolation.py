"""One failing engine, stream or event does not cost the job: the road's guard around every engine.

The road runs engines it did not write over input an attacker may have written. Whatever an engine
raises (any `Exception`, not only a `TianmuError`) is caught at the narrowest place that keeps the rest
sound, reported in the job's errors, and the job goes on:

- a batch engine whose `analyse` raises, or an event engine whose `open`, `partial` or `combine`
  raises, has **failed**: its result is dropped (it is not whole), the error `engine NAME failed:
  Type: message` is recorded, and every other engine's results are kept and saved;
- an event sink whose `begin` or `end` raises loses that **stream** (`engine NAME: STREAM: Type:
  message`), and one whose `add` raises loses that **event** (`engine NAME: STREAM: event N: ...`):
  the sink goes on with the next, and the engine's result is kept.

Per-event errors are capped (`MAX_EVENT_ERRORS` reported per sink, then a count), so a log of a million
poisoned lines costs a line of text, not a million. A `KeyboardInterrupt` or `SystemExit` is no
engine's failure and still stops the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tianmu.core.engine import EngineResult, EventEngine, EventSink, EventStream, JobContext, Requirements
from tianmu.core.models import Event

__all__ = ["MAX_EVENT_ERRORS", "GuardedEventEngine", "describe", "engine_failure"]

MAX_EVENT_ERRORS = 20
"""Failed events reported one by one per sink (per group of files); beyond, only their number."""
_MESSAGE_CHARS = 300


def engine_failure(name: str, exc: BaseException) -> str:
    """The error an assessment records for an engine that failed as a whole."""
    return f"engine {name} failed: {describe(exc)}"


def describe(exc: BaseException) -> str:
    """`Type: first line of the message` (and, for a worker's failure carrying its traceback, the
    traceback's last line): what a located error says about an exception."""
    try:
        text = str(exc).strip()
    except Exception:  # an exception whose message cannot be rendered is still named
        text = ""
    # The first line, cut: a message may quote a whole hostile record. A worker's failure carries its
    # traceback after the first line: its last line names the real cause, so it is kept too.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[0][:_MESSAGE_CHARS] if lines else ""
    if "Traceback (most recent call last):" in text and len(lines) > 1:
        message += f" … {lines[-1][:_MESSAGE_CHARS]}"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(slots=True)
class _Partial:
    """What a guarded sink hands back (picklable, as forked workers send it): the engine's own partial,
    or the reason the sink failed, and the records it had to skip."""

    inner: Any = None
    failure: str | None = None
    errors: list[str] = field(default_factory=list)


class _GuardedSink:
    """An engine's sink, each call of which is isolated: a failing event or stream is skipped."""

    def __init__(self, name: str, sink: EventSink | None, failure: str | None = None) -> None:
        self._name = name
        self._sink = sink
        self._failure = failure
        self._errors: list[str] = []
        self._skipped = 0
        self._stream = ""
        self._index = 0
        self._broken_stream = False

    def begin(self, stream: EventStream) -> bool:
        if self._sink is None:
            return False
        self._stream, self._index, self._broken_stream = stream.name, 0, False
        try:
            return bool(self._sink.begin(stream))
        except Exception as exc:
            self._errors.append(f"engine {self._name}: {stream.name}: {describe(exc)}")
            return False

    def add(self, event: Event) -> None:
        self._index += 1
        if self._sink is None:
            return
        try:
            self._sink.add(event)
        except Exception as exc:
            self._skipped += 1
            if self._skipped <= MAX_EVENT_ERRORS:
                where = f"{self._stream}: event {self._index}"
                self._errors.append(f"engine {self._name}: {where}: {describe(exc)}")

    def end(self, stream: EventStream, events: int, errors: Sequence[str]) -> None:
        if self._sink is None:
            return
        try:
            self._sink.end(stream, events, errors)
        except Exception as exc:
            self._errors.append(f"engine {self._name}: {stream.name}: {describe(exc)}")

    def partial(self) -> _Partial:
        errors, self._errors = self._errors, []
        if self._skipped > MAX_EVENT_ERRORS:
            more = self._skipped - MAX_EVENT_ERRORS
            errors.append(f"engine {self._name}: {more} more event(s) could not be analysed")
        self._skipped = 0
        if self._failure is not None or self._sink is None:
            return _Partial(failure=self._failure, errors=errors)
        try:
            return _Partial(inner=self._sink.partial(), errors=errors)
        except Exception as exc:
            return _Partial(failure=engine_failure(self._name, exc), errors=errors)


class GuardedEventEngine:
    """An event engine in the same shape, whose failures are isolated as the module docstring says."""

    def __init__(self, engine: EventEngine) -> None:
        self.engine = engine
        self.name: str = engine.name
        self.requirements: Requirements = engine.requirements

    def open(self, job: JobContext) -> _GuardedSink:
        try:
            return _GuardedSink(self.name, self.engine.open(job))
        except Exception as exc:
            return _GuardedSink(self.name, None, engine_failure(self.name, exc))

    def combine(self, partials: Sequence[Any], job: JobContext) -> EngineResult:
        errors = [error for partial in partials for error in partial.errors]
        failures = [partial.failure for partial in partials if partial.failure is not None]
        if failures:
            # One group's sink failed: the engine's result would miss its files; report the failure once.
            return EngineResult(errors=[*dict.fromkeys(failures), *errors])
        try:
            result = self.engine.combine([partial.inner for partial in partials], job)
        except Exception as exc:
            return EngineResult(errors=[engine_failure(self.name, exc), *errors])
        result.errors[:0] = errors
        return result
