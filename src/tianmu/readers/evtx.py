"""Windows EVTX files, read with the Rust `evtx` parser, flattened to the field names SigmaHQ rules use.

System fields become `EventID`, `Channel`, `Provider_Name`, `Computer`, `Level`, `Task`, `Keywords`,
`EventRecordID`, `TimeCreated`...; EventData and UserData children become top-level fields by their own
names (`CommandLine`, `Image`, `TargetUserName`...), as Sysmon and the Security log write them and as
SigmaHQ rules name them. `Execution` attributes are `Execution_ProcessID`/`Execution_ThreadID` so they
never collide with EventData's `ProcessId` (field names are compared case-insensitively by the engine).

Security 4688 (process creation with command-line auditing) names its fields differently from Sysmon 1;
SigmaHQ rules are written for Sysmon names, and the Windows audit pipeline of pySigma renames them on the
rule side. We rename on the event side instead (adding the Sysmon names beside the originals), so one
compiled rule serves both sources: that is how the `process_creation` log source covers 4688 too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import evtx

from tianmu.core.models import Event, Location
from tianmu.readers._common import ReadStats, parse_iso_time

__all__ = ["EVTX_MAGIC", "flatten_record", "read_evtx"]

EVTX_MAGIC = b"ElfFile\x00"

_SYSTEM_SCALARS = ("Version", "Level", "Task", "Opcode", "Keywords", "EventRecordID", "Channel", "Computer")

# Security 4688 → the Sysmon 1 names SigmaHQ process_creation rules use (pySigma's windows_audit pipeline
# does the same renames on the rule side). In 4688 `ProcessId` is the *parent's* id.
_AUDIT_4688 = (
    ("NewProcessName", "Image"),
    ("ParentProcessName", "ParentImage"),
    ("SubjectLogonId", "LogonId"),
)


def _text(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("#text")
    if isinstance(value, list):
        items = [_text(item) for item in value]
        return ",".join(str(item) for item in items if item is not None)
    return value


def _flatten_data(data: Any, fields: dict[str, Any]) -> None:
    """EventData/UserData children to fields; nested elements by their leaf names."""
    if not isinstance(data, dict):
        if data is not None:
            fields.setdefault("Data", _text(data))
        return
    for key, value in data.items():
        if key == "#attributes":
            continue
        if isinstance(value, dict) and "#text" not in value:
            _flatten_data(value, fields)
            continue
        text = _text(value)
        if text is not None:
            fields[key] = text


def flatten_record(doc: dict[str, Any]) -> tuple[dict[str, Any], datetime | None]:
    """One parsed EVTX record (`{"Event": {...}}`) to (fields, time)."""
    event = doc.get("Event") or {}
    system = event.get("System") or {}
    fields: dict[str, Any] = {}
    event_id = _text(system.get("EventID"))
    if event_id is not None:
        fields["EventID"] = event_id
    for key in _SYSTEM_SCALARS:
        value = system.get(key)
        if value is not None and not isinstance(value, dict):
            fields[key] = value
    provider = (system.get("Provider") or {}).get("#attributes") or {}
    for attr, name in (
        ("Name", "Provider_Name"),
        ("Guid", "Provider_Guid"),
        ("EventSourceName", "EventSourceName"),
    ):
        if provider.get(attr) is not None:
            fields[name] = provider[attr]
    execution = (system.get("Execution") or {}).get("#attributes") or {}
    for attr in ("ProcessID", "ThreadID"):
        if execution.get(attr) is not None:
            fields[f"Execution_{attr}"] = execution[attr]
    security = (system.get("Security") or {}) or {}
    user_id = (security.get("#attributes") or {}).get("UserID") if isinstance(security, dict) else None
    if user_id:
        fields["Security_UserID"] = user_id
    time_created: dict[str, Any] = system.get("TimeCreated") or {}
    created = (time_created.get("#attributes") or {}).get("SystemTime")
    if created:
        fields["TimeCreated"] = created
    _flatten_data(event.get("EventData"), fields)
    _flatten_data(event.get("UserData"), fields)
    if fields.get("EventID") in (4688, "4688") and fields.get("Channel") == "Security":
        for source, target in _AUDIT_4688:
            if source in fields and target not in fields:
                fields[target] = fields[source]
        if "NewProcessId" in fields:
            fields["ParentProcessId"] = fields.get("ProcessId")
            fields["ProcessId"] = fields["NewProcessId"]
    return fields, parse_iso_time(created)


def read_evtx(source: str | IO[bytes], path: str, stats: ReadStats) -> Iterator[Event]:
    """Events of one EVTX file (a path, or a seekable binary file object for archive members)."""
    try:
        # One thread: files are parallel across processes already, and the parser's thread pool costs
        # more than it saves on the small files event logs are usually exported as.
        parser = evtx.PyEvtxParser(source, number_of_threads=1)
        records = parser.records_json()
    except (OSError, RuntimeError) as exc:
        stats.malformed(path, None, f"not a readable EVTX file: {exc}")
        return
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except (OSError, RuntimeError) as exc:  # a damaged chunk: the parser goes on with the next one
            stats.malformed(path, None, f"damaged EVTX record: {exc}")
            continue
        if not isinstance(record, dict):
            continue
        number = int(record.get("event_record_id") or 0)
        raw = str(record.get("data") or "")
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            stats.malformed(path, number, f"EVTX record is not valid JSON: {exc}")
            continue
        fields, when = flatten_record(doc)
        # The System EventRecordID is what Event Viewer and other tools show; the chunk header's number
        # differs in exported or trimmed files.
        record_id = fields.get("EventRecordID")
        number = record_id if isinstance(record_id, int) else number
        yield Event(fields=fields, raw=raw, origin=Location(path, number), timestamp=when, source_type="evtx")
