"""Syslog files: RFC 3164 (BSD, `/var/log/auth.log`, `secure`, `messages`) and RFC 5424, and rsyslog's
high-precision ISO format.

Fields: `host`, `program` (app name), `pid`, `message`, and for RFC 5424 also `msgid` and
`structured_data`; with a `<PRI>` header, `facility` and `severity`. Authentication messages (sshd, sudo,
su, useradd, passwd, pam_unix) get the fields of `tianmu.readers.auth`. RFC 3164 has no year: it is taken
from the file's modification time, one year back when that would put the line in the future; times
without an offset are taken as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tianmu.core.models import Event, Location
from tianmu.readers._common import ReadStats, parse_iso_time
from tianmu.readers.auth import parse_auth_message

__all__ = ["ISO_SYSLOG", "RFC3164", "RFC5424", "program_fields", "read_syslog"]

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}
RFC3164 = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)"
    r"(?:\.\d+)?(?: (?P<year>\d{4}))? (?P<host>\S+) (?P<rest>.*)$"
)
RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$"
)
ISO_SYSLOG = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) "
    r"(?P<host>\S+) (?P<rest>.*)$"
)
_TAG = re.compile(r"^(?P<program>[^\s\[:]+(?:\([^)]*\))?)(?:\[(?P<pid>\d+)\])?: ?(?P<message>.*)$")
_FACILITIES = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
]
_SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


def program_fields(program: str | None, pid: str | None, message: str) -> dict[str, Any]:
    """`program`, `pid`, `message` and, for authentication programs, what the message says."""
    fields: dict[str, Any] = {"message": message}
    if program:
        fields["program"] = program
        fields.update(parse_auth_message(program, message))
    if pid:
        fields["pid"] = pid
    return fields


def _pri(fields: dict[str, Any], pri: str | None) -> None:
    if pri is None:
        return
    value = int(pri)
    facility = value >> 3
    fields["facility"] = _FACILITIES[facility] if facility < len(_FACILITIES) else str(facility)
    fields["severity"] = _SEVERITIES[value & 7]


def _tagged(fields: dict[str, Any], rest: str) -> None:
    tag = _TAG.match(rest)
    if tag:
        fields.update(program_fields(tag["program"], tag["pid"], tag["message"]))
    else:
        fields["message"] = rest


def _parse_line(text: str, year: int, reference: datetime) -> tuple[dict[str, Any], datetime | None] | None:
    found = RFC5424.match(text)
    if found:
        fields: dict[str, Any] = {"host": found["host"]}
        _pri(fields, found["pri"])
        app = None if found["app"] == "-" else found["app"]
        procid = None if found["procid"] == "-" else found["procid"]
        message = (found["msg"] or "").lstrip("\ufeff")
        fields.update(program_fields(app, procid, message))
        if found["msgid"] != "-":
            fields["msgid"] = found["msgid"]
        if found["sd"] != "-":
            fields["structured_data"] = found["sd"]
        return fields, parse_iso_time(found["ts"])
    found = ISO_SYSLOG.match(text)
    if found:
        fields = {"host": found["host"]}
        _pri(fields, found["pri"])
        _tagged(fields, found["rest"])
        return fields, parse_iso_time(found["ts"].replace(" ", "T", 1))
    found = RFC3164.match(text)
    if found and found["month"] in _MONTHS:
        fields = {"host": found["host"]}
        _pri(fields, found["pri"])
        _tagged(fields, found["rest"])
        hour, minute, second = (int(x) for x in found["time"].split(":"))
        line_year = int(found["year"]) if found["year"] else year
        try:
            when = datetime(
                line_year, _MONTHS[found["month"]], int(found["day"]), hour, minute, second, tzinfo=UTC
            )
        except ValueError:
            return None
        if not found["year"] and when > reference + timedelta(days=1):
            when = when.replace(year=line_year - 1)
        return fields, when
    return None


def read_syslog(
    lines: Iterable[tuple[int, str]], path: str, stats: ReadStats, *, reference: datetime | None = None
) -> Iterator[Event]:
    """Events of a syslog file; `reference` (the file's mtime) supplies the year RFC 3164 lacks."""
    reference = reference or datetime.now(UTC)
    for number, text in lines:
        if text.startswith("#"):
            continue
        parsed = _parse_line(text, reference.year, reference)
        if parsed is None:
            yield from stats.unparsed(
                path, number, text, "not a syslog line (RFC 3164, RFC 5424 or ISO timestamp expected)"
            )
            continue
        fields, when = parsed
        yield Event(
            fields=fields, raw=text, origin=Location(path, number), timestamp=when, source_type="syslog"
        )
