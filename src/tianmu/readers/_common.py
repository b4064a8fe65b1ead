"""What every log reader shares: read statistics with located errors, flattening, time parsing.

Readers never raise on a bad record: they call `ReadStats.malformed(path, line, reason)`, which counts it
and keeps the first messages (`path:line: reason`) for the user, and go on with the next record. A line
a reader cannot parse goes through `ReadStats.unparsed`, which also hands its text on (as an event of
source type `text`) when the read keeps unparsed text: a mixed file (an access log followed by free text)
still has all its lines searched for indicators.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from tianmu.core.models import Event, Location
from tianmu.readers.limits import ReadLimits, ReadStopped

__all__ = [
    "MAX_ERRORS",
    "ReadStats",
    "RecordFields",
    "flatten",
    "is_stop",
    "iter_lines",
    "parse_iso_time",
    "read_json_object_lines",
]

MAX_ERRORS = 200
"""Messages kept per read; every malformed record is still counted."""

_STOPS = (": read stopped", ": cannot read", ": cannot open")


def is_stop(message: str) -> bool:
    """Whether a read's message says a whole stream stopped (kept whatever the number of messages)."""
    return any(stop in message for stop in _STOPS)


@dataclass(slots=True)
class ReadStats:
    """Counts of one read (one file, a directory, or all inputs of a run)."""

    files: int = 0
    events: int = 0
    malformed_count: int = 0
    errors: list[str] = field(default_factory=list)
    """`path:line: reason` for the first MAX_ERRORS malformed records and unreadable files."""
    skipped_files: list[str] = field(default_factory=list)
    """Files in a directory that are not a log format we read (with the reason)."""
    stops: list[str] = field(default_factory=list)
    """The messages kept whatever their number (why a stream stopped); they are in `errors` too."""
    keep_unparsed: bool = False
    """Hand the text of unparsed lines on as `text` events (for engines that search any text)."""
    texts: int = 0
    """Unparsed lines handed on as text events."""

    def malformed(self, path: str, line: int | None, reason: str, *, always: bool = False) -> None:
        """Count a bad record; keep its message while fewer than MAX_ERRORS are kept, or `always` (why a
        whole stream stopped, which must not hide behind its malformed lines)."""
        self.malformed_count += 1
        if always or len(self.errors) < MAX_ERRORS:
            where = f"{path}:{line}" if line else path
            self.errors.append(f"{where}: {reason}")
            if always:
                self.stops.append(self.errors[-1])

    def unparsed(self, path: str, line: int, text: str, reason: str) -> Iterator[Event]:
        """A line no reader understood: counted as malformed, and its text as an event when kept."""
        self.malformed(path, line, reason)
        if self.keep_unparsed:
            self.texts += 1
            yield Event({}, text, Location(path, line), source_type="text")

    def merge(self, other: ReadStats) -> None:
        self.files += other.files
        self.events += other.events
        self.malformed_count += other.malformed_count
        kept = other.errors[: max(0, MAX_ERRORS - len(self.errors))]
        self.errors.extend(kept)
        self.errors.extend(stop for stop in other.stops if stop not in kept)
        self.stops.extend(other.stops)
        self.skipped_files.extend(other.skipped_files)


def iter_lines(
    stream: BinaryIO, path: str = "", stats: ReadStats | None = None, limits: ReadLimits | None = None
) -> Iterator[tuple[int, str]]:
    """1-based (line number, text) of a byte stream, in bounded memory.

    Logs are not always UTF-8 (TLS handshakes sent to an HTTP port land raw in access logs): undecodable
    bytes become U+FFFD instead of failing the file. CR, LF and CRLF all end a line; NUL is dropped.
    A line longer than `limits.max_line_bytes` is never held whole: it is skipped in bounded chunks and
    counted as malformed in `stats`. When the stream stops (`ReadStopped`), the line it stopped at is
    put on the exception.
    """
    limit = (limits or ReadLimits()).max_line_bytes
    number = 0
    try:
        while raw := stream.readline(limit + 1):
            if len(raw) > limit and not raw.endswith(b"\n"):
                number += 1
                while raw and not raw.endswith(b"\n"):  # the rest of the long line, a chunk at a time
                    raw = stream.readline(1 << 16)
                if stats is not None:
                    stats.malformed(path, number, f"line longer than {limit} bytes (skipped)")
                continue
            # A bare CR inside a line (old Mac endings, mixed in loghub's Apache sample) also ends a record.
            parts = raw.split(b"\r") if b"\r" in raw.rstrip(b"\r\n") else [raw]
            for part in parts:
                number += 1
                text = part.rstrip(b"\r\n").replace(b"\x00", b"").decode("utf-8", errors="replace")
                if text.strip():
                    yield number, text
    except ReadStopped as stopped:
        if stopped.line is None:
            stopped.line = number + 1
        raise


def flatten(value: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested JSON objects to dotted keys (`alert.signature`); lists of scalars stay lists."""
    out = {} if out is None else out
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, dict):
                flatten(item, name, out)
            elif item is not None:
                out[name] = item
    elif prefix:
        out[prefix] = value
    return out


def parse_iso_time(text: str | None) -> datetime | None:
    """ISO 8601 (with `Z`, offsets, or none: then UTC) to an aware UTC datetime; None if unreadable."""
    if not text:
        return None
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    # Suricata writes `+0000` offsets; fromisoformat (3.11) wants `+00:00`.
    if len(value) > 5 and value[-5] in "+-" and value[-4:].isdigit() and value[-3] != ":":
        value = f"{value[:-2]}:{value[-2:]}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


RecordFields = Callable[[dict[str, Any]], tuple[dict[str, Any], datetime | None]]
"""A reader's mapping of one JSON record to (event fields, event time)."""


def read_json_object_lines(
    lines: Iterable[tuple[int, str]], path: str, stats: ReadStats, to_fields: RecordFields, source_type: str
) -> Iterator[Event]:
    """Events of a log of one JSON object per line (journald export, JSON access logs).

    A line that is no JSON object (bad JSON, nested too deeply, an array or a number) is malformed,
    and its text still goes on to the engines that search any text (`ReadStats.unparsed`).
    """
    for number, text in lines:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield from stats.unparsed(path, number, text, f"not a JSON object: {exc.msg}")
            continue
        except RecursionError:
            yield from stats.unparsed(path, number, text, "JSON nested too deeply")
            continue
        if not isinstance(record, dict):
            yield from stats.unparsed(path, number, text, "not a JSON object")
            continue
        fields, when = to_fields(record)
        yield Event(
            fields=fields, raw=text, origin=Location(path, number), timestamp=when, source_type=source_type
        )
