"""Opening log inputs: transparent gz/bz2/xz/zip, format detection from content, and `iter_events`.

`iter_events(path)` is the one public way to read logs: a file or a directory of them (recursively), each
file's format judged from its first bytes, compressed files and zip members opened transparently. Each
Event keeps its origin: `Location(path, line)` for text formats, `Location(path, record)` for EVTX, with
`archive.zip!member` as the path of a zip member.

Damaged or hostile input never ends the read of other files (`tianmu.readers.limits`): a stream that
breaks off (bad gzip data, trailing garbage, a corrupt zip member) keeps the events read before the
damage and reports `path: read stopped at line N: reason`; lines, decompressed sizes, compression ratios
and EVTX spools are bounded by `ReadLimits`.

Formats (`FORMATS`, also the values of `--format`): evtx, syslog, auditd, journald, webserver (access
log lines), webserver-json, suricata, json (JSON lines or a JSON array, each record classified on its
own), csv.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from tianmu.core.engine import EventStream
from tianmu.core.errors import InputError
from tianmu.core.models import Event, Location
from tianmu.core.walk import WalkRules, WalkSkips, walk_tree
from tianmu.readers._common import ReadStats, iter_lines
from tianmu.readers.auditd import AUDIT_LINE, read_auditd
from tianmu.readers.evtx import EVTX_MAGIC, read_evtx
from tianmu.readers.journald import read_journald
from tianmu.readers.jsonlines import classify_record, iter_json_array, json_lines, read_csv, read_json_records
from tianmu.readers.limits import DECOMPRESSION_ERRORS, ReadLimits, ReadStopped
from tianmu.readers.opening import Prefixed, open_members, peek
from tianmu.readers.syslog import ISO_SYSLOG, RFC3164, RFC5424, read_syslog
from tianmu.readers.web import (
    ACCESS_LINE,
    APACHE_ERROR_LINE,
    NGINX_ERROR_LINE,
    read_access_log,
    read_error_log,
    read_json_access_log,
    read_w3c,
)

__all__ = [
    "FORMATS",
    "LOG_SKIP_DIRS",
    "detect_format",
    "find_log_files",
    "is_log_name",
    "iter_events",
    "iter_file_events",
    "iter_log_members",
    "open_members",
]

FORMATS = (
    "evtx",
    "syslog",
    "auditd",
    "journald",
    "webserver",
    "webserver-json",
    "webserver-error",
    "w3c",
    "suricata",
    "json",
    "csv",
)

_SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".mypy_cache"}
)
_SPOOL_IN_MEMORY = 64 << 20
_SNIFF_LINES = 20


def _sniff_text(lines: list[str]) -> str | None:
    votes: dict[str, int] = {}
    for text in lines:
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        kind = None
        if APACHE_ERROR_LINE.match(stripped) or NGINX_ERROR_LINE.match(stripped):
            kind = "webserver-error"
        elif stripped.startswith("{"):
            kind = "json"
        elif AUDIT_LINE.match(stripped):
            kind = "auditd"
        elif RFC5424.match(stripped) or ISO_SYSLOG.match(stripped) or RFC3164.match(stripped):
            kind = "syslog"
        elif ACCESS_LINE.match(
            stripped[1:-1] if stripped.startswith('"') and stripped.endswith('"') else stripped
        ):
            kind = "webserver"
        if kind:
            votes[kind] = votes.get(kind, 0) + 1
    if not votes:
        return _sniff_csv(lines)
    return max(votes.items(), key=lambda item: item[1])[0]


def _sniff_csv(lines: list[str]) -> str | None:
    """CSV only when it looks like a table: a header and at least two rows of the same width (>= 3)."""
    rows = [row for row in csv.reader(line for line in lines if line.strip())]
    if len(rows) < 3 or len(rows[0]) < 3:
        return None
    width = len(rows[0])
    return "csv" if all(len(row) == width for row in rows[1:-1] or rows[1:]) else None


def detect_format(head: bytes) -> str | None:
    """The format of a log from its first bytes (decompressed), or None when it is none we read."""
    if head.startswith(EVTX_MAGIC):
        return "evtx"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = text.lstrip()
    if re.match(r"\[\s*[{\]]", stripped):
        return "json"
    if head[:4096].count(b"\x00") > 16:  # binary; a few NULs do occur in real text logs
        return None
    if re.search(r"^#Fields: ", text[:8192], re.MULTILINE):
        return "w3c"  # IIS and other W3C extended logs (their data lines would pass for ISO syslog)
    lines = re.split(r"\r\n|\r|\n", text)
    if len(head) >= 65536 and len(lines) > 1:
        lines = lines[:-1]  # the last one is probably cut
    return _sniff_text(lines[:_SNIFF_LINES])


def _reference_time(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.now(UTC)


def _read_stream(
    stream: BinaryIO,
    name: str,
    fmt: str,
    stats: ReadStats,
    reference: datetime,
    field_map: Mapping[str, str] | None,
    limits: ReadLimits,
) -> Iterator[Event]:
    if fmt == "evtx":
        if isinstance(stream, io.BufferedReader) and stream.seekable():
            yield from read_evtx(stream.name, name, stats)
            return
        with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY) as spool:
            _spool_evtx(stream, cast(BinaryIO, spool), name, stats, limits)
            spool.seek(0)
            yield from read_evtx(spool, name, stats)
        return
    if fmt in ("json", "suricata") and _first_char(stream) == "[":
        records = iter_json_array(stream, name, stats, limits.max_line_bytes)
        yield from read_json_records(records, name, stats, field_map)
        return
    lines = iter_lines(stream, name, stats, limits)  # the caller hands a buffered stream (with `peek`)
    if fmt == "syslog":
        yield from read_syslog(lines, name, stats, reference=reference)
    elif fmt == "auditd":
        yield from read_auditd(lines, name, stats)
    elif fmt == "journald":
        yield from read_journald(lines, name, stats)
    elif fmt == "webserver":
        yield from read_access_log(lines, name, stats)
    elif fmt == "webserver-json":
        yield from read_json_access_log(lines, name, stats)
    elif fmt in ("json", "suricata"):
        yield from read_json_records(json_lines(lines, name, stats), name, stats, field_map)
    elif fmt == "w3c":
        yield from read_w3c(lines, name, stats)
    elif fmt == "webserver-error":
        yield from read_error_log(lines, name, stats)
    elif fmt == "csv":
        yield from read_csv(lines, name, stats, field_map)
    else:
        raise InputError(f"unknown log format {fmt!r} (known: {', '.join(FORMATS)})", name)


def _spool_evtx(stream: BinaryIO, spool: BinaryIO, name: str, stats: ReadStats, limits: ReadLimits) -> None:
    """A decompressed or archived EVTX into a seekable spool (the parser wants one), bounded.

    What was spooled before damage or the size limit is still parsed: the parser reads chunk by chunk
    and reports a cut chunk as a damaged record.
    """
    spooled = 0
    try:
        while block := stream.read(1 << 20):
            if spooled + len(block) > limits.max_spool_bytes:
                spool.write(block[: limits.max_spool_bytes - spooled])
                reason = f"read stopped: EVTX larger than {limits.max_spool_bytes} bytes"
                stats.malformed(name, None, reason, always=True)
                return
            spool.write(block)
            spooled += len(block)
    except ReadStopped as stopped:
        stats.malformed(name, None, f"read stopped after {spooled} bytes: {stopped.reason}", always=True)


def _first_char(stream: BinaryIO) -> str:
    head = stream.peek(64) if hasattr(stream, "peek") else b""
    return head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")[:1]


_MAX_TEXT_BYTES = 256 << 20
"""Plain-text fallback only for files up to this size (the lines are scanned in bounded blocks)."""


def iter_log_members(
    path: Path | str,
    *,
    fmt: str | None = None,
    field_map: Mapping[str, str] | None = None,
    text_fallback: bool = False,
    unparsed_text: bool = False,
    limits: ReadLimits | None = None,
) -> Iterator[tuple[EventStream, ReadStats, Iterator[Event]]]:
    """Each stream of one file with its own read statistics and its events, opening the file once.

    The consumer exhausts a member's events before asking for the next member. A stream in no format a
    reader knows is a member of format `unknown`, and a file or stream that cannot be read one of format
    `unreadable` (its stats say why), both without events. With `text_fallback`, a plain file that gave
    no event at all is read again from its start, on the same open file, as a `text` member of numbered
    lines (so an engine looking for indicators in any text never opens the file a second time).
    With `unparsed_text`, the lines a reader could not parse come among the events as `text` events
    (counted as malformed, not as events). `limits` bound the read (`ReadLimits()` by default).
    """
    name_of_file = str(path)
    file = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown log format {fmt!r} (known: {', '.join(FORMATS)})", name_of_file)
    reference = _reference_time(file)
    limits = limits or ReadLimits()
    with ExitStack() as stack:
        try:
            members = list(open_members(file, stack, limits))
        except (OSError, zipfile.BadZipFile) as exc:
            failed = ReadStats()
            failed.malformed(name_of_file, None, f"cannot open: {exc}", always=True)
            yield EventStream(name_of_file, name_of_file, "unreadable"), failed, iter(())
            return
        events_seen = 0
        for name, stream in members:
            stats = ReadStats(keep_unparsed=unparsed_text)
            try:
                head, stream = peek(stream)
            except OSError as exc:  # a plain file that cannot be read (EIO)
                stats.malformed(name, None, f"cannot read: {exc}", always=True)
                yield EventStream(name_of_file, name, "unreadable"), stats, iter(())
                continue
            if not head and isinstance(stream, Prefixed) and stream.stopped is not None:
                stats.malformed(name, None, f"cannot read: {stream.stopped.reason}", always=True)
                yield EventStream(name_of_file, name, "unreadable"), stats, iter(())
                continue
            kind = fmt or detect_format(head)
            if kind is None:
                yield EventStream(name_of_file, name, "unknown"), stats, iter(())
                continue
            generic = fmt is None and not _plausible_in_walk(kind, head)
            stats.files += 1
            buffered = (
                stream
                if hasattr(stream, "peek")
                else cast(BinaryIO, io.BufferedReader(cast(Any, stream), 1 << 16))
            )
            member = EventStream(name_of_file, name, kind, generic)
            events = _read_stream(buffered, name, kind, stats, reference, field_map, limits)
            yield member, stats, _counted(events, name, stats)
            events_seen += stats.events + stats.texts
        if text_fallback and events_seen == 0 and len(members) == 1 and members[0][0] == name_of_file:
            raw = members[0][1]
            lines = _text_lines(raw, name_of_file, limits)
            if lines is not None:
                yield EventStream(name_of_file, name_of_file, "text", True), ReadStats(), lines


def _counted(events: Iterator[Event], name: str, stats: ReadStats) -> Iterator[Event]:
    """Events counted (not the text of unparsed lines: `stats.texts`); a stream that breaks off ends here."""
    try:
        for event in events:
            if event.source_type != "text":
                stats.events += 1
            yield event
    except ReadStopped as stopped:
        stats.malformed(name, None, stopped.located(), always=True)
    except DECOMPRESSION_ERRORS as exc:  # a plain file's read error, or a reader's own decompression
        stats.malformed(name, None, f"read stopped: {exc}", always=True)


def _text_lines(raw: BinaryIO, name: str, limits: ReadLimits) -> Iterator[Event] | None:
    """The numbered lines of a plain text file, from its start; None for binary or too large files."""
    try:
        size = os.fstat(raw.fileno()).st_size
        raw.seek(0)
        head = raw.read(8192)
        raw.seek(0)
    except (OSError, ValueError, io.UnsupportedOperation, ReadStopped):  # a damaged compressed stream
        return None
    if b"\x00" in head or size > _MAX_TEXT_BYTES:
        return None
    return _numbered(raw, name, limits)


def _numbered(raw: BinaryIO, name: str, limits: ReadLimits) -> Iterator[Event]:
    # CR, LF and CRLF end a line, as in text mode; lines are bounded as in every reader.
    buffered = raw if hasattr(raw, "peek") else cast(BinaryIO, io.BufferedReader(cast(Any, raw), 1 << 16))
    try:
        for number, line in iter_lines(buffered, name, ReadStats(), limits):
            yield Event({}, line, Location(name, number), source_type="text")
    except ReadStopped:
        return  # damage was reported by the reader of the log stream already


def iter_file_events(
    path: Path,
    stats: ReadStats,
    fmt: str | None = None,
    field_map: Mapping[str, str] | None = None,
    *,
    strict: bool = True,
    limits: ReadLimits | None = None,
) -> Iterator[Event]:
    """Events of one file (each zip member on its own). `strict`: an unknown format is an error.

    Not strict (a file found in a folder walk): generic JSON and CSV data are passed over.
    """
    for member, member_stats, events in iter_log_members(path, fmt=fmt, field_map=field_map, limits=limits):
        if member.format == "unknown" or (member.generic and not strict):
            if strict:
                stats.malformed(member.name, None, "not a log format Tianmu reads")
            else:
                stats.skipped_files.append(f"{member.name}: not a log format Tianmu reads")
            continue
        try:
            yield from events
        finally:
            stats.merge(member_stats)


def _plausible_in_walk(kind: str, head: bytes) -> bool:
    """In a folder walk, generic JSON and CSV files are data, not logs, unless they look like a log we know.

    A named file is read in whatever format it is; a folder (a project, a mounted system) holds
    package.json, fixtures and spreadsheets that would each become a flood of malformed "records".
    """
    if kind == "csv":
        return False
    if kind != "json":
        return True
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return '"event_type"' in text[:4096] or '"__REALTIME_TIMESTAMP"' in text[:4096]
    first = text.split("\n", 1)[0]
    try:
        record = json.loads(first)
    except (ValueError, RecursionError):  # a line nested thousands deep is no log record either
        return False
    return isinstance(record, dict) and classify_record(record) != "json"


_LOG_SUFFIXES = frozenset(
    {
        ".log",
        ".evtx",
        ".json",
        ".jsonl",
        ".ndjson",
        ".txt",
        ".csv",
        ".gz",
        ".bz2",
        ".xz",
        ".zip",
        ".eve",
        ".audit",
    }
)
_LOG_NAMES = re.compile(r"(log|messages|secure|syslog|auth|audit|access|error|eve|journal)", re.IGNORECASE)


_DOC_NAMES = re.compile(
    r"^(readme|license|licence|copying|notice|authors|changelog)([.-].*)?$", re.IGNORECASE
)


_DOC_SUFFIXES = (".md", ".rst", ".html", ".py", ".yml", ".yaml")


def is_log_name(name: str) -> bool:
    """What a log may be called (content decides later): `auth.log.1`, `messages.2.gz`, `eve.json`,
    `secure`, or a name without suffix; documentation and source files are not."""
    rotated = re.sub(r"(\.\d+)+$", "", name)  # auth.log.1, messages.2.gz
    if _DOC_NAMES.match(rotated) or rotated.lower().endswith(
        (".md", ".rst", ".html", ".py", ".yml", ".yaml")
    ):
        return False
    suffix = Path(rotated).suffix.lower()
    return suffix in _LOG_SUFFIXES or bool(_LOG_NAMES.search(rotated)) or not suffix


LOG_SKIP_DIRS = _SKIP_DIRS
"""Folders a search for logs never enters (version control, dependency trees, virtualenvs, caches)."""


def find_log_files(
    root: Path, *, all_files: bool = False, rules: WalkRules | None = None, skips: WalkSkips | None = None
) -> Iterator[Path]:
    """Files under `root` that may be logs (by name; content decides later), sorted, no symlinks followed.

    With `all_files`, every regular file is a candidate (what `tianmu detect DIR` does). The walk is
    the shared one (`tianmu.core.walk`): no pseudo file system, one file system unless `rules` say
    otherwise, `--exclude` and `.tianmuignore`; FIFOs, sockets and devices are never yielded (opening
    a FIFO blocks); what was left out is counted in `skips`.
    """
    if root.is_file():
        yield root
        return
    skips = skips if skips is not None else WalkSkips()

    def unlisted(relpath: str, exc: OSError) -> None:
        skips.errors.append(f"{root / relpath}: cannot list directory: {exc.strerror or exc}")

    def skipped(_parent: str, name: str) -> bool:
        return name in _SKIP_DIRS

    for item, _relpath in walk_tree(root, on_error=unlisted, skip_dir=skipped, rules=rules, skips=skips):
        try:
            if item.is_symlink():
                continue
            if not item.is_file(follow_symlinks=False):
                skips.special += 1
                continue
        except OSError:
            continue
        if all_files or is_log_name(item.name):
            yield Path(item.path)


def iter_events(
    path: Path,
    *,
    fmt: str | None = None,
    field_map: Mapping[str, str] | None = None,
    stats: ReadStats | None = None,
    limits: ReadLimits | None = None,
) -> Iterator[Event]:
    """Every event of a log file or of the log files in a directory (see the module docstring).

    Malformed records are counted in `stats` (with `path:line: reason`) and skipped. In a directory,
    files that are no log format are passed over and listed in `stats.skipped_files`.
    Raises InputError when `path` does not exist or `fmt` is unknown.
    """
    stats = stats if stats is not None else ReadStats()
    if not path.exists():
        raise InputError("no such file or directory", str(path))
    if path.is_dir():
        for file in find_log_files(path, all_files=True):
            yield from iter_file_events(file, stats, fmt, field_map, strict=False, limits=limits)
        return
    yield from iter_file_events(path, stats, fmt, field_map, strict=True, limits=limits)
