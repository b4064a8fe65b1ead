"""JSON logs (one object per line, or one JSON array of objects) and CSV logs, with an optional field map.

A JSON record is read by what it is: a Suricata EVE event, a journald export record, a web access record
(nginx/Apache JSON log formats) or any other object, flattened with dotted keys. `field_map` renames
fields after that (`{"src": "src_ip"}`), so a site's own JSON or CSV logs can meet Sigma field names.

JSON arrays are decoded one element at a time (`raw_decode` over a sliding buffer), so a large
pretty-printed array is read in bounded memory and each record keeps the line it starts on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from tianmu.core.models import Event, Location
from tianmu.readers._common import ReadStats, flatten, parse_iso_time
from tianmu.readers.evtx import flatten_record
from tianmu.readers.journald import is_journal_record, journal_fields
from tianmu.readers.limits import ReadStopped
from tianmu.readers.suricata import is_eve_record, suricata_fields
from tianmu.readers.web import json_access_fields

__all__ = ["classify_record", "iter_json_array", "read_csv", "read_json_records", "record_event"]

_WEB_HINTS = frozenset(
    {"remote_addr", "request", "http_user_agent", "request_uri", "status", "cs-method", "c-ip"}
)
_TIME_KEYS = ("@timestamp", "timestamp", "time", "ts", "date", "datetime", "eventtime")


def classify_record(record: Mapping[str, Any]) -> str:
    """`evtx` (an EVTX record exported as JSON), `suricata`, `journald`, `webserver` or `json`."""
    event = record.get("Event")
    if isinstance(event, dict) and isinstance(event.get("System"), dict):
        return "evtx"
    if is_eve_record(dict(record)):
        return "suricata"
    if is_journal_record(dict(record)):
        return "journald"
    keys = set(record)
    if len(keys & _WEB_HINTS) >= 2:
        return "webserver"
    return "json"


def _generic_time(fields: Mapping[str, Any]) -> datetime | None:
    lowered = {key.lower(): value for key, value in fields.items()}
    for key in _TIME_KEYS:
        value = lowered.get(key)
        if isinstance(value, str):
            when = parse_iso_time(value)
            if when:
                return when
    return None


def record_event(
    record: dict[str, Any],
    raw: str,
    location: Location,
    field_map: Mapping[str, str] | None,
    kind: str | None = None,
) -> Event:
    kind = kind or classify_record(record)
    if kind == "evtx":
        # `evtx_dump -o jsonl`, Velociraptor and similar exports: the same flattening as EVTX files.
        fields, when = flatten_record(record)
    elif kind == "suricata":
        fields, when = suricata_fields(record)
    elif kind == "journald":
        fields, when = journal_fields(record)
    elif kind == "webserver":
        fields, when = json_access_fields(record)
    else:
        fields = flatten(record)
        when = None
    if field_map:
        fields = {field_map.get(key, key): value for key, value in fields.items()}
    if when is None:
        when = _generic_time(fields)
    return Event(fields=fields, raw=raw, origin=location, timestamp=when, source_type=kind)


def iter_json_array(
    stream: BinaryIO, path: str, stats: ReadStats, max_record: int = 1 << 20
) -> Iterator[tuple[int, str, Any]]:
    """(line, raw text, value) of each element of a top-level JSON array, in bounded memory.

    An element longer than `max_record` characters is skipped with a located error; one that does not
    even end within the bytes read is never held whole: the read stops there (an array cannot be
    resynchronised without parsing the element). A stream that breaks off raises `ReadStopped` with the
    line it stopped at.
    """
    decoder = json.JSONDecoder()
    text_stream = io.TextIOWrapper(stream, encoding="utf-8", errors="replace")
    buffer = ""
    line = 1
    started = False
    eof = False

    def more() -> str:
        nonlocal eof
        try:
            chunk = text_stream.read(1 << 16)
        except ReadStopped as stopped:
            stopped.line = line
            raise
        eof = not chunk
        return chunk

    try:
        while True:
            # Keep enough text in the buffer for one whole element; read more when a decode runs out.
            stripped = buffer.lstrip()
            line += buffer[: len(buffer) - len(stripped)].count("\n")
            buffer = stripped
            if not started:
                if not buffer and not eof:
                    buffer += more()
                    continue
                if not buffer.startswith("["):
                    stats.malformed(path, line, "JSON array expected")
                    return
                buffer = buffer[1:]
                started = True
                continue
            if buffer.startswith(","):
                buffer = buffer[1:]
                continue
            if buffer.startswith("]"):
                return
            if not buffer:
                if eof:
                    stats.malformed(path, line, "JSON array is not closed")
                    return
                buffer += more()
                continue
            try:
                value, end = decoder.raw_decode(buffer)
            except RecursionError:
                stats.malformed(path, line, "JSON nested too deeply")
                return
            except ValueError as exc:
                if len(buffer) > max_record:
                    stats.malformed(
                        path, line, f"JSON record longer than {max_record} characters (read stopped)"
                    )
                    return
                if not eof:
                    buffer += more()
                    continue
                stats.malformed(path, line, f"invalid JSON: {exc}")
                return
            raw = buffer[:end]
            if end > max_record:
                stats.malformed(path, line, f"JSON record longer than {max_record} characters (skipped)")
            else:
                yield line, raw, value
            line += raw.count("\n")
            buffer = buffer[end:]
    finally:
        text_stream.detach()  # the binary stream is the caller's


def read_json_records(
    records: Iterable[tuple[int, str, Any]], path: str, stats: ReadStats, field_map: Mapping[str, str] | None
) -> Iterator[Event]:
    for number, raw, value in records:
        if isinstance(value, _Unparsed):
            yield from stats.unparsed(path, number, raw, value.reason)
            continue
        if not isinstance(value, dict):
            yield from stats.unparsed(path, number, raw, "not a JSON object")
            continue
        try:
            event = record_event(value, raw, Location(path, number), field_map)
        except RecursionError:
            stats.malformed(path, number, "JSON nested too deeply")
            continue
        yield event


@dataclass(frozen=True, slots=True)
class _Unparsed:
    """A JSON line that did not decode, and why (its text may still be wanted as text)."""

    reason: str


def json_lines(
    lines: Iterable[tuple[int, str]], path: str, stats: ReadStats
) -> Iterator[tuple[int, str, Any]]:
    for number, text in lines:
        try:
            yield number, text, json.loads(text)
        except json.JSONDecodeError as exc:
            # Handed on (not counted here): `read_json_records` counts it and keeps its text.
            yield number, text, _Unparsed(f"not valid JSON: {exc.msg} (column {exc.colno})")
        except RecursionError:
            yield number, text, _Unparsed("JSON nested too deeply")


def read_csv(
    lines: Iterable[tuple[int, str]], path: str, stats: ReadStats, field_map: Mapping[str, str] | None
) -> Iterator[Event]:
    """CSV with a header row; each row an event named by the header (then by `field_map`)."""
    header: list[str] | None = None
    for number, text in lines:
        try:
            row = next(csv.reader([text]))
        except csv.Error as exc:
            yield from stats.unparsed(path, number, text, f"bad CSV: {exc}")
            continue
        if header is None:
            header = [field_map.get(name, name) if field_map else name for name in row]
            continue
        if len(row) != len(header):
            reason = f"{len(row)} columns where the header has {len(header)}"
            yield from stats.unparsed(path, number, text, reason)
            continue
        fields = {name: value for name, value in zip(header, row, strict=True) if value != ""}
        yield Event(
            fields=fields,
            raw=text,
            origin=Location(path, number),
            timestamp=_generic_time(fields),
            source_type="csv",
        )
