"""Suricata EVE JSON: `eve.json` (one event per line) or a JSON array of events.

Nested objects are flattened with dots (`alert.signature`, `alert.severity`, `http.hostname`,
`http.url`, `dns.rrname`, `tls.sni`), the names Sigma rules over EVE use; `event_type` says which of
alert, http, dns, tls, flow... the event is, and becomes the log source's service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tianmu.readers._common import flatten, parse_iso_time

__all__ = ["is_eve_record", "suricata_fields"]


def is_eve_record(record: dict[str, Any]) -> bool:
    return "event_type" in record and ("src_ip" in record or "flow_id" in record or "timestamp" in record)


def suricata_fields(record: dict[str, Any]) -> tuple[dict[str, Any], datetime | None]:
    fields = flatten(record)
    return fields, parse_iso_time(
        record.get("timestamp") if isinstance(record.get("timestamp"), str) else None
    )
