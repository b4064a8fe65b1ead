"""`journalctl -o json` exports: one JSON object per line, journald's own field names.

The journal fields are kept as they are (`_HOSTNAME`, `SYSLOG_IDENTIFIER`, `_COMM`, `_EXE`, `_PID`,
`MESSAGE`...) and the syslog names are added (`host`, `program`, `pid`, `message`), with the
authentication fields of `tianmu.readers.auth`, so the same rules read a journal and a syslog file.
`MESSAGE` may be an array of bytes when it was not UTF-8; it is decoded with replacement characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from tianmu.core.models import Event
from tianmu.readers._common import ReadStats, read_json_object_lines
from tianmu.readers.syslog import program_fields

__all__ = ["is_journal_record", "journal_fields", "read_journald"]


def is_journal_record(record: dict[str, Any]) -> bool:
    return "__REALTIME_TIMESTAMP" in record or ("MESSAGE" in record and "_BOOT_ID" in record)


def _text(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(b, int) for b in value):
        return bytes(b & 0xFF for b in value).decode("utf-8", errors="replace")
    if isinstance(value, list):
        return " ".join(_text(item) for item in value)
    return "" if value is None else str(value)


def journal_fields(record: dict[str, Any]) -> tuple[dict[str, Any], datetime | None]:
    fields = {key: _text(value) for key, value in record.items() if value is not None}
    program = fields.get("SYSLOG_IDENTIFIER") or fields.get("_COMM")
    fields.update(
        program_fields(program, fields.get("_PID") or fields.get("SYSLOG_PID"), fields.get("MESSAGE", ""))
    )
    if "_HOSTNAME" in fields:
        fields["host"] = fields["_HOSTNAME"]
    when = None
    stamp = fields.get("__REALTIME_TIMESTAMP") or fields.get("_SOURCE_REALTIME_TIMESTAMP")
    if stamp and stamp.isdigit():
        when = datetime.fromtimestamp(int(stamp) / 1_000_000, UTC)
    return fields, when


def read_journald(lines: Iterable[tuple[int, str]], path: str, stats: ReadStats) -> Iterator[Event]:
    return read_json_object_lines(lines, path, stats, journal_fields, "journald")
