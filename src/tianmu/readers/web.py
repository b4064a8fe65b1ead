"""Web server access logs: Apache/nginx combined and common formats, and JSON access logs.

Fields follow Sigma's `webserver` taxonomy: `c-ip`, `cs-username`, `cs-method`, `cs-uri-stem`,
`cs-uri-query` (without the `?`), `cs-uri` (the request target as sent), `cs-version`, `sc-status`,
`sc-bytes`, `cs-referer`, `cs-user-agent`, plus `cs-host` when the log has it. A request line that is not
`METHOD TARGET PROTOCOL` (TLS handshakes sent to a plain HTTP port, junk from scanners) is kept as
`request` without a method: it is a real line of the log, not a malformed record.

Quirk handled: some exports wrap each whole line in an extra pair of double quotes without escaping the
quotes inside (the w3af sample of the shared data); the wrapper is removed before parsing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from tianmu.core.models import Event, Location
from tianmu.readers._common import ReadStats, parse_iso_time, read_json_object_lines

__all__ = ["ACCESS_LINE", "JSON_WEB_KEYS", "access_fields", "read_access_log", "read_json_access_log"]

ACCESS_LINE = re.compile(
    r"^(?:(?P<vhost>\S+) )?(?P<ip>\S+) (?P<ident>\S+) (?P<user>.+?) \[(?P<time>[^\]]+)\] "
    r'"(?P<request>.*?)" (?P<status>\d{3}|-) (?P<bytes>\d+|-)'
    r'(?: "(?P<referer>.*?)" "(?P<agent>.*?)")?(?P<extra>.*)$'
)
_REQUEST = re.compile(r"^(?P<method>[A-Za-z_-]+) (?P<target>\S+)(?: (?P<version>[A-Za-z]+/[\d.]+))?$")
_TIME = "%d/%b/%Y:%H:%M:%S %z"

JSON_WEB_KEYS = {
    # nginx `log_format ... escape=json` names and Apache mod_log_json/ECS-ish names → Sigma names.
    "remote_addr": "c-ip",
    "client_ip": "c-ip",
    "clientip": "c-ip",
    "remote_user": "cs-username",
    "request_method": "cs-method",
    "method": "cs-method",
    "status": "sc-status",
    "body_bytes_sent": "sc-bytes",
    "bytes_sent": "sc-bytes",
    "http_referer": "cs-referer",
    "referer": "cs-referer",
    "http_user_agent": "cs-user-agent",
    "user_agent": "cs-user-agent",
    "host": "cs-host",
    "server_protocol": "cs-version",
    "protocol": "cs-version",
}


def _split_target(fields: dict[str, Any], target: str) -> None:
    fields["cs-uri"] = target
    stem, _, query = target.partition("?")
    fields["cs-uri-stem"] = stem
    if query:
        fields["cs-uri-query"] = query


def _request(fields: dict[str, Any], request: str) -> None:
    fields["request"] = request
    found = _REQUEST.match(request)
    if found:
        fields["cs-method"] = found["method"]
        _split_target(fields, found["target"])
        if found["version"]:
            fields["cs-version"] = found["version"]


def _access_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _TIME).astimezone(UTC)
    except ValueError:
        pass
    try:  # some servers leave the offset out: the time is then taken as UTC
        return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def access_fields(text: str) -> tuple[dict[str, Any], datetime | None] | None:
    """Fields and time of one combined/common log line; None when it is not one."""
    if text.startswith('"') and text.endswith('"') and text.count('"') > 2:
        text = text[1:-1]
    found = ACCESS_LINE.match(text)
    if not found:
        return None
    when = _access_time(found["time"])
    if when is None:
        return None
    fields: dict[str, Any] = {"c-ip": found["ip"]}
    if found["vhost"]:
        fields["cs-host"] = found["vhost"]
    if found["user"] not in ("-", ""):
        fields["cs-username"] = found["user"]
    _request(fields, found["request"])
    if found["status"] != "-":
        fields["sc-status"] = int(found["status"])
    if found["bytes"] != "-":
        fields["sc-bytes"] = int(found["bytes"])
    if found["referer"] not in (None, "-"):
        fields["cs-referer"] = found["referer"]
    if found["agent"] not in (None, "-"):
        fields["cs-user-agent"] = found["agent"]
    return fields, when


def read_access_log(lines: Iterable[tuple[int, str]], path: str, stats: ReadStats) -> Iterator[Event]:
    for number, text in lines:
        if text.startswith("#"):
            continue
        parsed = access_fields(text)
        if parsed is None:
            yield from stats.unparsed(path, number, text, "not a common/combined access log line")
            continue
        fields, when = parsed
        yield Event(
            fields=fields, raw=text, origin=Location(path, number), timestamp=when, source_type="webserver"
        )


def json_access_fields(record: dict[str, Any]) -> tuple[dict[str, Any], datetime | None]:
    fields: dict[str, Any] = {}
    for key, value in record.items():
        if value is None or isinstance(value, (dict, list)):
            continue
        fields[JSON_WEB_KEYS.get(key, key)] = value
    if "request" in record and isinstance(record["request"], str):
        _request(fields, record["request"])
    elif "request_uri" in record or "uri" in record:
        target = str(record.get("request_uri") or record.get("uri"))
        if "args" in record and record["args"] and "?" not in target:
            target = f"{target}?{record['args']}"
        _split_target(fields, target)
    if "sc-status" in fields:
        with contextlib.suppress(TypeError, ValueError):
            fields["sc-status"] = int(fields["sc-status"])
    when = None
    for key in ("time_iso8601", "timestamp", "@timestamp", "time"):
        if isinstance(record.get(key), str):
            when = parse_iso_time(record[key])
            if when:
                break
    if when is None and isinstance(record.get("time_local"), str):
        try:
            when = datetime.strptime(record["time_local"], _TIME).astimezone(UTC)
        except ValueError:
            when = None
    return fields, when


def read_json_access_log(lines: Iterable[tuple[int, str]], path: str, stats: ReadStats) -> Iterator[Event]:
    return read_json_object_lines(lines, path, stats, json_access_fields, "webserver")


APACHE_ERROR_LINE = re.compile(
    r"^\[(?P<time>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? \d{4})\] "
    r"\[(?:(?P<module>[\w-]*):)?(?P<level>\w+)\](?: \[pid (?P<pid>\d+)(?::tid \d+)?\])?"
    r"(?: \[client (?P<client>[^\]]+)\])? ?(?P<message>.*)$"
)
NGINX_ERROR_LINE = re.compile(
    r"^(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>\w+)\] (?P<pid>\d+)#\d+: "
    r"(?:\*\d+ )?(?P<message>.*)$"
)


def read_error_log(lines: Iterable[tuple[int, str]], path: str, stats: ReadStats) -> Iterator[Event]:
    """Apache and nginx error logs: `level`, `message`, `pid`, `c-ip`; the server name is `server`."""
    for number, text in lines:
        if text.startswith("#"):
            continue
        fields: dict[str, Any]
        found = APACHE_ERROR_LINE.match(text)
        when: datetime | None = None
        if found:
            fields = {"server": "apache", "level": found["level"], "message": found["message"]}
            for fmt in ("%a %b %d %H:%M:%S.%f %Y", "%a %b %d %H:%M:%S %Y"):
                try:
                    when = datetime.strptime(found["time"], fmt).replace(tzinfo=UTC)
                    break
                except ValueError:
                    continue
            if found["module"]:
                fields["module"] = found["module"]
            if found["client"]:
                fields["c-ip"] = (
                    found["client"].rsplit(":", 1)[0] if found["client"].count(":") == 1 else found["client"]
                )
        else:
            found = NGINX_ERROR_LINE.match(text)
            if not found:
                yield from stats.unparsed(path, number, text, "not an Apache or nginx error log line")
                continue
            fields = {"server": "nginx", "level": found["level"], "message": found["message"]}
            when = datetime.strptime(found["time"], "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
        if found["pid"]:
            fields["pid"] = found["pid"]
        yield Event(
            fields=fields,
            raw=text,
            origin=Location(path, number),
            timestamp=when,
            source_type="webserver-error",
        )


_W3C_NAMES = {
    "cs(user-agent)": "cs-user-agent",
    "cs(referer)": "cs-referer",
    "cs(cookie)": "cs-cookie",
    "cs(host)": "cs-host",
}


def read_w3c(lines: Iterable[tuple[int, str]], path: str, stats: ReadStats) -> Iterator[Event]:
    """W3C extended logs (IIS and others): `#Fields:` names the space-separated columns.

    Names become Sigma's (`cs(User-Agent)` → `cs-user-agent`); `-` is an absent value; `date` and
    `time` (UTC in IIS) make the timestamp; `cs-uri` is rebuilt from stem and query.
    """
    names: list[str] | None = None
    for number, text in lines:
        if text.startswith("#"):
            if text.lower().startswith("#fields:"):
                names = [_W3C_NAMES.get(n.lower(), n) for n in text.split(":", 1)[1].split()]
            continue
        values = text.split(" ")
        if names is None or len(values) != len(names):
            expected = f"{len(names)} fields" if names else "a #Fields: line first"
            yield from stats.unparsed(path, number, text, f"not a W3C log line ({expected} expected)")
            continue
        fields: dict[str, Any] = {
            name: value for name, value in zip(names, values, strict=True) if value != "-"
        }
        when = None
        if "date" in fields and "time" in fields:
            when = parse_iso_time(f"{fields['date']}T{fields['time']}")
        if "cs-uri-stem" in fields:
            query = fields.get("cs-uri-query")
            fields["cs-uri"] = fields["cs-uri-stem"] + (f"?{query}" if query else "")
        if "sc-status" in fields:
            with contextlib.suppress(ValueError):
                fields["sc-status"] = int(fields["sc-status"])
        yield Event(
            fields=fields, raw=text, origin=Location(path, number), timestamp=when, source_type="webserver"
        )
