"""Linux audit logs (`/var/log/audit/audit.log`): `type=X msg=audit(EPOCH:SERIAL): key=value ...`.

Each line is one event with `type`, the `key=value` pairs as fields (quotes removed) and the serial that
ties the records of one syscall together (`audit_serial`). SigmaHQ's auditd rules test these raw names
(`type`, `syscall`, `exe`, `comm`, `key`, `a0`...). `proctitle` and other hex-encoded values are also
given decoded as `<name>_decoded` (NUL separators as spaces), since rules search command lines in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from tianmu.core.models import Event, Location
from tianmu.readers._common import ReadStats

__all__ = ["AUDIT_LINE", "read_auditd"]

AUDIT_LINE = re.compile(
    r"^(?:node=(?P<node>\S+) )?type=(?P<type>\S+) "
    r"msg=audit\((?P<epoch>\d+(?:\.\d+)?):(?P<serial>\d+)\):\s?(?P<body>.*)$"
)
_PAIR = re.compile(r"""(?P<key>[\w-]+)=(?P<value>"[^"]*"|'[^']*'|\S*)""")
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")
_HEX_FIELDS = frozenset({"proctitle", "cmd", "a0", "a1", "a2", "a3", "name", "cwd", "exe", "comm", "data"})


def _pairs(body: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    # The user-space part of USER_* records sits in msg='...': its pairs are fields as well.
    inner = re.search(r"msg='([^']*)'", body)
    if inner:
        body = body[: inner.start()] + " " + inner.group(1) + body[inner.end() :]
    for found in _PAIR.finditer(body):
        value = found["value"]
        quoted = value[:1] in "\"'" and len(value) >= 2
        value = value[1:-1] if quoted else value
        key = found["key"]
        fields[key] = value
        if not quoted and key in _HEX_FIELDS and len(value) >= 4 and _HEX.match(value):
            fields[f"{key}_decoded"] = (
                bytes.fromhex(value).replace(b"\x00", b" ").decode("utf-8", errors="replace")
            )
    return fields


def read_auditd(lines: Iterable[tuple[int, str]], path: str, stats: ReadStats) -> Iterator[Event]:
    for number, text in lines:
        found = AUDIT_LINE.match(text)
        if not found:
            yield from stats.unparsed(
                path, number, text, "not an audit record (type=... msg=audit(time:serial): expected)"
            )
            continue
        fields = {"type": found["type"], "audit_serial": found["serial"], **_pairs(found["body"])}
        if found["node"]:
            fields["node"] = found["node"]
        when = datetime.fromtimestamp(float(found["epoch"]), UTC)
        yield Event(
            fields=fields, raw=text, origin=Location(path, number), timestamp=when, source_type="auditd"
        )
