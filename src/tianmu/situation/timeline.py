"""A finding as a point on an incident's timeline: when it happened, what it names, what it links to.

Correlation (`correlation`) joins findings that share a link within a time window; these are the
pieces it reads from one finding: its time (evidence time, else when Tianmu first saw it), its
entities (`evidence["entities"]`), the links those give (an address, a host, a hash, a domain, a URL,
a user on an asset; loopback and unspecified addresses never link), and the timeline entry an incident
keeps for it, with the order entries are sorted in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from tianmu.core.models import ENTITY_TYPES, Finding

from .tactics import TACTIC_NAMES, tactic_index

__all__ = [
    "LINK_TYPES",
    "Link",
    "as_utc",
    "entities_of",
    "entry_epoch",
    "entry_key",
    "finding_time",
    "interval_start",
    "links_of",
    "parse_time",
    "timeline_entry",
]

Link = tuple[str, str]
"""(kind, normalised value): `("ip", "203.0.113.45")`, `("user", "root@web01")`."""
LINK_TYPES = ("ip", "host", "hash", "domain", "url")
"""Entity kinds that link findings (a user links only on its own asset)."""


@lru_cache(maxsize=65536)
def _parse_iso(value: str) -> datetime | None:
    # Cached: a timeline's times are parsed again at every sort and stage computation.
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str) and value:
        return _parse_iso(value)
    return None


def as_utc(value: object) -> datetime | None:
    """A datetime or ISO 8601 text as an aware UTC datetime (SQLite returns naive ones); else None."""
    return parse_time(value)


def finding_time(finding: Finding) -> datetime | None:
    """When the finding's event happened: evidence time, else when Tianmu first saw it."""
    evidence = parse_time(finding.evidence.get("time"))
    return evidence or parse_time(finding.first_seen) or parse_time(finding.last_seen)


def entities_of(evidence: Mapping[str, Any]) -> dict[str, list[str]]:
    raw = evidence.get("entities")
    out: dict[str, list[str]] = {}
    if not isinstance(raw, Mapping):
        return out
    for kind in ENTITY_TYPES:
        values = raw.get(kind)
        if isinstance(values, str):
            values = [values]
        if isinstance(values, list | tuple):
            clean = [str(v) for v in values if isinstance(v, str | int) and str(v)]
            if clean:
                out[kind] = list(dict.fromkeys(clean))
    return out


@lru_cache(maxsize=65536)
def _ip_link(value: str) -> str | None:
    """The canonical text of an address that may link findings; None for loopback, unspecified, junk."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified:
        return None
    return str(address)


def links_of(tenant: str, asset_kind: str, asset: str, entities: Mapping[str, list[str]]) -> set[Link]:
    links: set[Link] = {("asset", f"{tenant}|{asset_kind}|{asset}")}
    if asset_kind == "host":
        links.add(("host", asset.lower()))
    for kind in LINK_TYPES:
        for value in entities.get(kind, ()):
            if kind == "ip":
                normal = _ip_link(value)
                if normal is not None:
                    links.add(("ip", normal))
                continue
            links.add((kind, value.lower()))
    for user in entities.get("user", ()):
        links.add(("user", f"{user.lower()}@{asset}"))
    return links


def timeline_entry(finding: Finding, tactics: list[str], fingerprint: str | None = None) -> dict[str, Any]:
    moment = finding_time(finding)
    evidence = {k: finding.evidence[k] for k in ("path", "line", "record", "sha256") if k in finding.evidence}
    return {
        "time": moment.isoformat().replace("+00:00", "Z") if moment else None,
        "fingerprint": fingerprint or finding.fingerprint,
        "kind": finding.kind.value,
        "rule_id": finding.rule_id,
        "title": finding.title,
        "severity": finding.severity.value,
        "tactics": tactics,
        "asset": finding.asset.name,
        "asset_kind": finding.asset.kind.value,
        "entities": entities_of(finding.evidence),
        "evidence": evidence,
    }


def interval_start(interval: list[Any]) -> float:
    return float(interval[0])


def entry_epoch(entry: Mapping[str, Any]) -> float | None:
    moment = parse_time(entry.get("time"))
    return moment.timestamp() if moment is not None else None


def entry_key(entry: Mapping[str, Any]) -> tuple[int, float, int, str]:
    tactics = entry.get("tactics") or []
    first = tactic_index(tactics[0]) if tactics else len(TACTIC_NAMES)
    epoch = entry_epoch(entry)
    return (0 if epoch is not None else 1, epoch or 0.0, first, entry.get("fingerprint", ""))
