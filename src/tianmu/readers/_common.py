"""What every log reader shares: read statistics with located errors, flattening, time parsing.

Readers never raise on a bad record: they call `ReadStats.malformed(path, line, reason)`, which counts it
and keeps the first messages (`path:line: reason`) for the user, and go on with the next record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

__all__ = ["MAX_ERRORS", "ReadStats", "flatten", "iter_lines", "parse_iso_time"]

MAX_ERRORS = 200
"""Messages kept per read; every malformed record is still counted."""


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

    def malformed(self, path: str, line: int | None, reason: str) -> None:
        self.malformed_count += 1
        if len(self.errors) < MAX_ERRORS:
            where = f"{path}:{line}" if line else path
            self.errors.append(f"{where}: {reason}")

    def merge(self, other: ReadStats) -> None:
        self.files += other.files
        self.events += other.events
        self.malformed_count += other.malformed_count
        self.errors.extend(other.errors[: max(0, MAX_ERRORS - len(self.errors))])
        self.skipped_files.extend(other.skipped_files)


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    """1-based (line number, text) of a byte stream, in bounded memory.

    Logs are not always UTF-8 (TLS handshakes sent to an HTTP port land raw in access logs): undecodable
    bytes become U+FFFD instead of failing the file. CR, LF and CRLF all end a line; NUL is dropped.
    """
    number = 0
    for raw in stream:
        # A bare CR inside a line (old Mac endings, mixed in loghub's Apache sample) also ends a record.
        parts = raw.split(b"\r") if b"\r" in raw.rstrip(b"\r\n") else [raw]
        for part in parts:
            number += 1
            text = part.rstrip(b"\r\n").replace(b"\x00", b"").decode("utf-8", errors="replace")
            if text.strip():
                yield number, text


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
