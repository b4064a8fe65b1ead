"""Correlation: findings that share an entity within a time window become one Incident.

Streaming by design: a `Correlator` takes findings one at a time (`add`) and says which incident each
one created or changed, so the same code serves a batch (`correlate(findings)`), an assessment that
adds findings to incidents already stored, and a live feed.

The rules, documented in docs/situation.md:

- Only event-like findings are correlated (kinds detection, malware, intel by default): a vulnerability
  is a standing condition, not something that happened at a time, and belongs to risk, not incidents.
- A finding links to an incident when it shares a *link* with it and its time lies within `window` of
  the incident's span. Links are the finding's asset, and its evidence entities of types ip, host,
  hash, domain and url; user names link only on the same asset (``root`` on two hosts is not one
  person); loopback and unspecified addresses link nothing. Process images and file paths are shown
  but do not link: ``/bin/bash`` is on every host.
- A finding that links to several incidents merges them into the oldest.
- The timeline is ordered by evidence time, then kill-chain order. The stage is the furthest ATT&CK
  tactic reached (see `tactics`); what happened before the first initial-access evidence counts at
  most as initial access, since the attacker was still outside (the brute force that preceded a
  successful login was the way in, not progress beyond it). Severity is the worst finding's, at least
  high once the attacker is inside (a tactic only an insider shows — execution, persistence, privilege
  escalation, defense evasion, lateral movement, collection, command and control — or initial access
  followed by more) and critical at exfiltration or impact.
- A resolved incident that gets a new finding is reopened; status and assignee are otherwise kept.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tianmu.core.models import (
    ENTITY_TYPES,
    Finding,
    FindingKind,
    Incident,
    Severity,
    TriageStatus,
)

from .tactics import TACTIC_NAMES, TACTICS, TechniqueResolver, finding_tactics, tactic_index

__all__ = [
    "CORRELATED_KINDS",
    "DEFAULT_WINDOW",
    "Correlator",
    "IncidentChange",
    "as_utc",
    "correlate",
    "finding_time",
    "incident_state",
]

DEFAULT_WINDOW = timedelta(hours=24)
CORRELATED_KINDS = frozenset({FindingKind.DETECTION, FindingKind.MALWARE, FindingKind.INTEL})
_LINK_TYPES = ("ip", "host", "hash", "domain", "url")
_INITIAL = "initial-access"
# Tactics that only an attacker already inside shows; credential access (a brute force) and discovery
# (a scan) are also done from the outside, so on their own they do not raise an incident's severity.
_INSIDE = frozenset(
    {
        "execution",
        "persistence",
        "privilege-escalation",
        "defense-evasion",
        "lateral-movement",
        "collection",
        "command-and-control",
    }
)
_FINAL = {tactic_index("exfiltration"), tactic_index("impact")}

Link = tuple[str, str]


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def as_utc(value: object) -> datetime | None:
    """A datetime or ISO 8601 text as an aware UTC datetime (SQLite returns naive ones); else None."""
    return _parse_time(value)


def finding_time(finding: Finding) -> datetime | None:
    """When the finding's event happened: evidence time, else when Tianmu first saw it."""
    evidence = _parse_time(finding.evidence.get("time"))
    return evidence or _parse_time(finding.first_seen) or _parse_time(finding.last_seen)


def _entities(evidence: Mapping[str, Any]) -> dict[str, list[str]]:
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


def _links(tenant: str, asset_kind: str, asset: str, entities: Mapping[str, list[str]]) -> set[Link]:
    links: set[Link] = {("asset", f"{tenant}|{asset_kind}|{asset}")}
    if asset_kind == "host":
        links.add(("host", asset.lower()))
    for kind in _LINK_TYPES:
        for value in entities.get(kind, ()):
            if kind == "ip":
                try:
                    address = ipaddress.ip_address(value)
                except ValueError:
                    continue
                if address.is_loopback or address.is_unspecified:
                    continue
                value = str(address)
            links.add((kind, value.lower()))
    for user in entities.get("user", ()):
        links.add(("user", f"{user.lower()}@{asset}"))
    return links


def _entry(finding: Finding, tactics: list[str]) -> dict[str, Any]:
    moment = finding_time(finding)
    evidence = {k: finding.evidence[k] for k in ("path", "line", "record", "sha256") if k in finding.evidence}
    return {
        "time": moment.isoformat().replace("+00:00", "Z") if moment else None,
        "fingerprint": finding.fingerprint,
        "kind": finding.kind.value,
        "rule_id": finding.rule_id,
        "title": finding.title,
        "severity": finding.severity.value,
        "tactics": tactics,
        "asset": finding.asset.name,
        "asset_kind": finding.asset.kind.value,
        "entities": _entities(finding.evidence),
        "evidence": evidence,
    }


def _entry_key(entry: Mapping[str, Any]) -> tuple[int, str, int, str]:
    tactics = entry.get("tactics") or []
    first = tactic_index(tactics[0]) if tactics else len(TACTIC_NAMES)
    time = entry.get("time")
    return (0 if time else 1, time or "", first, entry.get("fingerprint", ""))


def incident_state(incident: Incident) -> str:
    """What an alert reports a change of: status, stage and severity."""
    return f"{incident.status.value}|{incident.stage or '-'}|{incident.severity.value}"


@dataclass(slots=True)
class IncidentChange:
    """What one `Correlator.add` did."""

    incident: Incident
    created: bool
    state_changed: bool
    """Status, stage or severity moved (or the incident is new): alert-worthy."""
    merged: list[str] = field(default_factory=list)
    """Ids of incidents folded into this one."""


@dataclass(slots=True)
class _Tracked:
    incident: Incident
    links: set[Link]
    start: datetime | None
    end: datetime | None


class Correlator:
    """Incremental correlation of findings into incidents (see the module docstring)."""

    def __init__(
        self,
        *,
        tenant: str = "default",
        window: timedelta = DEFAULT_WINDOW,
        resolver: TechniqueResolver | None = None,
        kinds: Iterable[FindingKind] = CORRELATED_KINDS,
        incidents: Iterable[Incident] = (),
    ) -> None:
        self.tenant = tenant
        self.window = window
        self.resolver = resolver
        self.kinds = frozenset(kinds)
        self._tracked: dict[str, _Tracked] = {}
        self._by_link: dict[Link, set[str]] = {}
        self._by_fingerprint: dict[str, str] = {}
        for incident in incidents:
            self._track(incident)

    @property
    def incidents(self) -> list[Incident]:
        """Every incident, oldest first."""
        far = datetime.max.replace(tzinfo=UTC)
        tracked = sorted(self._tracked.values(), key=lambda t: (t.start or far, t.incident.id))
        return [t.incident for t in tracked]

    def _track(self, incident: Incident) -> None:
        links: set[Link] = set()
        for entry in incident.timeline:
            links |= _links(
                incident.tenant,
                entry.get("asset_kind", ""),
                entry.get("asset", ""),
                entry.get("entities", {}),
            )
            self._by_fingerprint[entry["fingerprint"]] = incident.id
        times = [t for t in (_parse_time(e.get("time")) for e in incident.timeline) if t is not None]
        tracked = _Tracked(incident, links, min(times, default=None), max(times, default=None))
        self._tracked[incident.id] = tracked
        for link in links:
            self._by_link.setdefault(link, set()).add(incident.id)

    def _untrack(self, incident_id: str) -> _Tracked:
        tracked = self._tracked.pop(incident_id)
        for link in tracked.links:
            self._by_link.get(link, set()).discard(incident_id)
        return tracked

    def _in_window(self, tracked: _Tracked, moment: datetime | None) -> bool:
        if moment is None or tracked.start is None or tracked.end is None:
            return True
        return tracked.start - self.window <= moment <= tracked.end + self.window

    def add(self, finding: Finding) -> IncidentChange | None:
        """Fold one finding in; None when it is not correlated (kind, or already in its incident)."""
        if finding.kind not in self.kinds or finding.asset.tenant != self.tenant:
            return None
        fingerprint = finding.fingerprint
        if fingerprint in self._by_fingerprint:
            return None
        moment = finding_time(finding)
        entry = _entry(finding, finding_tactics(finding, self.resolver))
        links = _links(self.tenant, finding.asset.kind.value, finding.asset.name, entry["entities"])
        candidates = {i for link in links for i in self._by_link.get(link, ())}
        matches = [self._tracked[i] for i in candidates if self._in_window(self._tracked[i], moment)]
        far = datetime.max.replace(tzinfo=UTC)
        matches.sort(key=lambda t: (t.start or far, t.incident.id))
        if not matches:
            incident = Incident(
                title="",
                tenant=self.tenant,
                id="INC-" + hashlib.sha256(f"{self.tenant}|{fingerprint}".encode()).hexdigest()[:12],
            )
            self._tracked[incident.id] = _Tracked(incident, set(), None, None)
            matches = [self._tracked[incident.id]]
            created, before = True, ""
        else:
            created, before = False, incident_state(matches[0].incident)
        keep = self._untrack(matches[0].incident.id)
        merged: list[str] = []
        for other in matches[1:]:
            gone = self._untrack(other.incident.id)
            keep.incident.timeline.extend(gone.incident.timeline)
            keep.incident.assignee = keep.incident.assignee or gone.incident.assignee
            merged.append(gone.incident.id)
        keep.incident.timeline.append(entry)
        if keep.incident.status is TriageStatus.RESOLVED:
            keep.incident.status = TriageStatus.OPEN
        _derive(keep.incident)
        self._track(keep.incident)
        return IncidentChange(
            keep.incident, created, created or incident_state(keep.incident) != before, merged
        )

    def add_all(self, findings: Iterable[Finding]) -> list[IncidentChange]:
        """Add many, oldest first (so an incident is seeded by its earliest finding)."""
        far = datetime.max.replace(tzinfo=UTC)
        ordered = sorted(findings, key=lambda f: finding_time(f) or far)
        return [change for change in map(self.add, ordered) if change is not None]


def _stage(timeline: list[dict[str, Any]]) -> str | None:
    """The furthest tactic reached; up to the first initial-access evidence (included) the attacker was
    still outside, so what they did then (a brute force is credential access) counts as initial access."""
    entry_times = [e["time"] for e in timeline if _INITIAL in e.get("tactics", []) and e.get("time")]
    inside_from = min(entry_times, default=None)
    best = -1
    for entry in timeline:
        for tactic in entry.get("tactics", []):
            at = tactic_index(tactic)
            time = entry.get("time")
            if inside_from is not None and time and time <= inside_from:
                at = min(at, tactic_index(_INITIAL))
            best = max(best, at)
    return TACTICS[best] if 0 <= best < len(TACTICS) else None


def _derive(incident: Incident) -> None:
    """Recompute everything that follows from the timeline."""
    incident.timeline.sort(key=_entry_key)
    timeline = incident.timeline
    tactics = {t for entry in timeline for t in entry.get("tactics", [])}
    incident.tactics = sorted(tactics, key=tactic_index)
    incident.stage = _stage(timeline)
    incident.finding_fingerprints = [e["fingerprint"] for e in timeline]
    incident.assets = list(dict.fromkeys(e["asset"] for e in timeline))
    entities: dict[str, list[str]] = {}
    for entry in timeline:
        for kind, values in entry.get("entities", {}).items():
            bucket = entities.setdefault(kind, [])
            bucket.extend(v for v in values if v not in bucket)
    incident.entities = entities
    incident.sources = list(entities.get("ip", []))
    times = [t for t in (_parse_time(e.get("time")) for e in timeline) if t is not None]
    incident.first_seen = min(times, default=None)
    incident.last_seen = max(times, default=None)
    worst = max((Severity(e["severity"]) for e in timeline), key=lambda s: s.rank, default=Severity.INFO)
    stage_at = tactic_index(incident.stage) if incident.stage else -1
    inside = bool(tactics & _INSIDE) or (_INITIAL in tactics and stage_at > tactic_index(_INITIAL))
    if stage_at in _FINAL:
        worst = Severity.CRITICAL
    elif inside and not worst.at_least(Severity.HIGH):
        worst = Severity.HIGH
    incident.severity = worst
    where = (
        incident.assets[0]
        if len(incident.assets) == 1
        else f"{incident.assets[0]} and {len(incident.assets) - 1} more"
    )
    what = TACTIC_NAMES[incident.stage] if incident.stage else "Suspicious activity"
    incident.title = f"{what} on {where}" + (f" from {incident.sources[0]}" if incident.sources else "")


def correlate(
    findings: Iterable[Finding],
    *,
    tenant: str | None = None,
    window: timedelta = DEFAULT_WINDOW,
    resolver: TechniqueResolver | None = None,
) -> list[Incident]:
    """Batch correlation: the incidents these findings form, oldest first.

    `tenant` defaults to the first finding's; findings of other tenants are never mixed in.
    """
    items = list(findings)
    if not items:
        return []
    correlator = Correlator(tenant=tenant or items[0].asset.tenant, window=window, resolver=resolver)
    correlator.add_all(items)
    return correlator.incidents
