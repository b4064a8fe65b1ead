"""Correlation: findings that share an entity within a time window become one Incident.

What one finding contributes — its time, entities, links and timeline entry — is read in `timeline`.
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
- Fan-out limit: an ip, host, hash, domain or url seen on more than `fanout` assets (default 50)
  among the findings the correlator holds is too common to mean one attacker — a resolver, an update
  server, a scanner sweeping the network, a hash every host has — and links no more: it stays in the
  incidents' entities and in tracing, but no longer joins the incidents of different assets (a finding
  still joins its asset's incident through the asset itself). `correlate` and `add_all` count before
  they link, so a batch's result does not depend on its order; findings added one by one join through
  such a link until it crosses the limit, and what was merged stays merged.
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
from bisect import bisect_right, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tianmu.core.models import (
    Finding,
    FindingKind,
    Incident,
    Severity,
    TriageStatus,
)

from .tactics import TACTIC_NAMES, TACTICS, TechniqueResolver, finding_tactics, tactic_index
from .timeline import (
    LINK_TYPES,
    Link,
    entities_of,
    entry_epoch,
    entry_key,
    finding_time,
    interval_start,
    links_of,
    parse_time,
    timeline_entry,
)

__all__ = [
    "CORRELATED_KINDS",
    "DEFAULT_FANOUT",
    "DEFAULT_WINDOW",
    "Correlator",
    "IncidentChange",
    "correlate",
    "incident_state",
]

DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_FANOUT = 50
CORRELATED_KINDS = frozenset({FindingKind.DETECTION, FindingKind.MALWARE, FindingKind.INTEL})
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
    """An incident and the running aggregates that make each `add` cheap (no full recomputation)."""

    incident: Incident
    tactics: set[str] = field(default_factory=set)
    inside_from: float | None = None
    """Epoch of the first initial-access evidence: the stage rule's divide."""
    best: int = -1
    """Kill-chain index of the stage."""
    worst: int = -1
    """Highest finding severity rank."""
    start: float = float("inf")
    """Epoch of the earliest entry: the older incident absorbs the others in a merge."""
    dirty: bool = True
    """The derived lists (sorted timeline, entities, assets...) need rebuilding."""


def _effective(entry: Mapping[str, Any], inside_from: float | None) -> int:
    best = -1
    epoch = entry_epoch(entry)
    for tactic in entry.get("tactics", []):
        at = tactic_index(tactic)
        if inside_from is not None and epoch is not None and epoch <= inside_from:
            at = min(at, tactic_index(_INITIAL))
        best = max(best, at)
    return best


def _stage_index(timeline: Iterable[Mapping[str, Any]], inside_from: float | None) -> int:
    """The furthest tactic reached; up to the first initial-access evidence (included) the attacker was
    still outside, so what they did then (a brute force is credential access) counts as initial access."""
    return max((_effective(e, inside_from) for e in timeline), default=-1)


class Correlator:
    """Incremental correlation of findings into incidents (see the module docstring).

    Two findings belong together when they share a link and their times are at most `window` apart;
    incidents are the connected groups of that relation. Every sighting of every link is indexed by
    time, so the result does not depend on the order findings arrive in, and each `add` costs a few
    index look-ups plus the incident's own aggregates.
    """

    def __init__(
        self,
        *,
        tenant: str = "default",
        window: timedelta = DEFAULT_WINDOW,
        resolver: TechniqueResolver | None = None,
        kinds: Iterable[FindingKind] = CORRELATED_KINDS,
        incidents: Iterable[Incident] = (),
        fanout: int | None = DEFAULT_FANOUT,
    ) -> None:
        self.tenant = tenant
        self.window = window.total_seconds()
        self.fanout = fanout
        self.hubs: set[Link] = set()
        """Links seen on more than `fanout` assets: kept as entities, no longer linking."""
        self._seen_on: dict[Link, set[str]] = {}
        self.resolver = resolver
        self.kinds = frozenset(kinds)
        self._tracked: dict[str, _Tracked] = {}
        self._parent: dict[str, str] = {}
        """Merged incident id → the id that absorbed it (union-find; `_root` compresses paths)."""
        self._timed: dict[Link, list[list[Any]]] = {}
        """Per link, `[start, end, incident id]` intervals sorted by start. Sightings of one incident
        less than a window apart share an interval, so "is there a sighting within the window of t"
        is exactly "does t fall within the window of an interval", and a busy link (a host with
        thousands of alerts an hour) stays a handful of intervals."""
        self._longest: dict[Link, float] = {}
        self._untimed: dict[Link, set[str]] = {}
        self._fingerprints: set[str] = set()
        for incident in incidents:
            self._load(incident)

    # -- bookkeeping -----------------------------------------------------------------------------------

    def _root(self, incident_id: str) -> str:
        root = incident_id
        while root in self._parent:
            root = self._parent[root]
        while incident_id != root:
            self._parent[incident_id], incident_id = root, self._parent[incident_id]
        return root

    def _usable(self, links: set[Link], asset_kind: str, asset: str) -> set[Link]:
        """Count the asset against each link's fan-out; the links that may still join incidents."""
        if self.fanout is None:
            return links
        where = f"{asset_kind}|{asset}"
        for link in links:
            if link[0] not in LINK_TYPES or link in self.hubs:
                continue
            seen = self._seen_on.setdefault(link, set())
            seen.add(where)
            if len(seen) > self.fanout:
                self.hubs.add(link)
                del self._seen_on[link]
        return links - self.hubs if self.hubs else links

    def _index(self, entry: Mapping[str, Any], incident_id: str, links: set[Link] | None = None) -> None:
        if links is None:
            kind, asset = entry.get("asset_kind", ""), entry.get("asset", "")
            links = self._usable(links_of(self.tenant, kind, asset, entry.get("entities", {})), kind, asset)
        epoch = entry_epoch(entry)
        root = self._root(incident_id)
        for link in links:
            if epoch is None:
                self._untimed.setdefault(link, set()).add(root)
                continue
            intervals = self._timed.setdefault(link, [])
            for interval in self._near(link, epoch):
                if self._root(interval[2]) == root:
                    moved = epoch < interval[0]
                    interval[0], interval[1], interval[2] = (
                        min(interval[0], epoch),
                        max(interval[1], epoch),
                        root,
                    )
                    if moved:
                        intervals.sort(key=interval_start)
                    self._longest[link] = max(self._longest.get(link, 0.0), interval[1] - interval[0])
                    break
            else:
                insort(intervals, [epoch, epoch, root], key=interval_start)
        self._fingerprints.add(entry["fingerprint"])

    def _near(self, link: Link, epoch: float) -> Iterable[list[Any]]:
        """The intervals of `link` with a sighting within the window of `epoch`, latest start first."""
        intervals = self._timed.get(link, [])
        longest = self._longest.get(link, 0.0)
        index = bisect_right(intervals, epoch + self.window, key=interval_start)
        while index > 0:
            index -= 1
            interval = intervals[index]
            if interval[0] + longest < epoch - self.window:
                return  # every earlier interval ends before the window opens
            if interval[1] >= epoch - self.window:
                yield interval

    def _load(self, incident: Incident) -> None:
        tracked = _Tracked(incident, dirty=False)
        for entry in incident.timeline:
            self._absorb(tracked, entry)
            self._index(entry, incident.id)
        tracked.best = _stage_index(incident.timeline, tracked.inside_from)
        self._tracked[incident.id] = tracked

    @staticmethod
    def _absorb(tracked: _Tracked, entry: Mapping[str, Any]) -> bool:
        """Fold one entry into the aggregates; True when the stage must be recomputed from scratch."""
        tactics = entry.get("tactics", [])
        tracked.tactics.update(tactics)
        tracked.worst = max(tracked.worst, Severity(entry["severity"]).rank)
        epoch = entry_epoch(entry)
        if epoch is not None:
            tracked.start = min(tracked.start, epoch)
        earlier = tracked.inside_from is None or (epoch is not None and epoch < tracked.inside_from)
        if _INITIAL in tactics and epoch is not None and earlier:
            tracked.inside_from = epoch
            return True
        tracked.best = max(tracked.best, _effective(entry, tracked.inside_from))
        return False

    def _linked(self, links: set[Link], epoch: float | None) -> set[str]:
        found: set[str] = set()
        for link in links:
            found.update(self._untimed.get(link, ()))
            if epoch is None:
                found.update(interval[2] for interval in self._timed.get(link, ()))
                continue
            found.update(interval[2] for interval in self._near(link, epoch))
        return {self._root(i) for i in found}

    def _headline(self, tracked: _Tracked) -> None:
        """Stage and severity: what `incident_state` reads, kept current after every add."""
        incident = tracked.incident
        incident.stage = TACTICS[tracked.best] if 0 <= tracked.best < len(TACTICS) else None
        worst = next((s for s in Severity if s.rank == tracked.worst), Severity.INFO)
        inside = bool(tracked.tactics & _INSIDE) or (
            _INITIAL in tracked.tactics and tracked.best > tactic_index(_INITIAL)
        )
        if tracked.best in _FINAL:
            worst = Severity.CRITICAL
        elif inside and not worst.at_least(Severity.HIGH):
            worst = Severity.HIGH
        incident.severity = worst

    # -- the public surface ----------------------------------------------------------------------------

    @property
    def incidents(self) -> list[Incident]:
        """Every incident, oldest first."""
        self.flush()
        far = datetime.max.replace(tzinfo=UTC)
        ordered = sorted(self._tracked.values(), key=lambda t: (t.incident.first_seen or far, t.incident.id))
        return [t.incident for t in ordered]

    def add(self, finding: Finding, *, materialise: bool = True) -> IncidentChange | None:
        """Fold one finding in; None when it is not correlated (kind, tenant, or already in an incident).

        The incident's id, status, stage and severity are always current. Its lists (sorted timeline,
        entities, assets...) are rebuilt at once unless `materialise=False`, for a feed that adds many
        findings and then calls `flush()` (rebuilding a large incident after every finding costs its size).
        """
        change = self._add(finding)
        if change is not None and materialise:
            _materialise(self._tracked[change.incident.id])
        return change

    def flush(self) -> None:
        """Bring every incident's lists up to date (after `add(..., materialise=False)`)."""
        for tracked in self._tracked.values():
            if tracked.dirty:
                _materialise(tracked)

    def _add(self, finding: Finding) -> IncidentChange | None:
        if finding.kind not in self.kinds or finding.asset.tenant != self.tenant:
            return None
        fingerprint = finding.fingerprint
        if fingerprint in self._fingerprints:
            return None
        entry = timeline_entry(finding, finding_tactics(finding, self.resolver), fingerprint)
        kind, asset = finding.asset.kind.value, finding.asset.name
        links = self._usable(links_of(self.tenant, kind, asset, entry["entities"]), kind, asset)
        roots = sorted(
            (self._tracked[r] for r in self._linked(links, entry_epoch(entry))),
            key=lambda t: (t.start, t.incident.id),
        )
        merged: list[str] = []
        if not roots:
            incident = Incident(
                title="",
                tenant=self.tenant,
                id="INC-" + hashlib.sha256(f"{self.tenant}|{fingerprint}".encode()).hexdigest()[:12],
            )
            keep = self._tracked[incident.id] = _Tracked(incident)
            created, before = True, ""
        else:
            keep, created, before = roots[0], False, incident_state(roots[0].incident)
            restage = False
            for other in roots[1:]:
                gone = self._tracked.pop(other.incident.id)
                self._parent[gone.incident.id] = keep.incident.id
                keep.incident.timeline.extend(gone.incident.timeline)
                keep.incident.assignee = keep.incident.assignee or gone.incident.assignee
                keep.tactics |= gone.tactics
                keep.worst = max(keep.worst, gone.worst)
                keep.start = min(keep.start, gone.start)
                if gone.inside_from is not None and (
                    keep.inside_from is None or gone.inside_from < keep.inside_from
                ):
                    # The divide moved: every entry must be measured again (rare: the older incident
                    # usually holds the earlier initial access).
                    keep.inside_from = gone.inside_from
                    restage = True
                elif not restage:
                    # Only the absorbed entries are new to the divide: O(size of the smaller side).
                    keep.best = max(keep.best, _stage_index(gone.incident.timeline, keep.inside_from))
                merged.append(gone.incident.id)
            if restage:
                keep.best = _stage_index(keep.incident.timeline, keep.inside_from)
        keep.incident.timeline.append(entry)
        if self._absorb(keep, entry):
            keep.best = _stage_index(keep.incident.timeline, keep.inside_from)
        self._index(entry, keep.incident.id, links)
        keep.dirty = True
        if keep.incident.status is TriageStatus.RESOLVED:
            keep.incident.status = TriageStatus.OPEN
        self._headline(keep)
        return IncidentChange(
            keep.incident, created, created or incident_state(keep.incident) != before, merged
        )

    def add_all(self, findings: Iterable[Finding]) -> list[IncidentChange]:
        """Add many, oldest first (so an incident is seeded by its earliest finding); the incidents are
        brought up to date once at the end rather than after every finding."""
        far = datetime.max.replace(tzinfo=UTC)
        ordered = sorted(findings, key=lambda f: finding_time(f) or far)
        if self.fanout is not None:
            # Fan-out counted over the whole batch first: whether a link is too common to join
            # incidents must not depend on which findings happened to come before it.
            for finding in ordered:
                if finding.kind in self.kinds and finding.asset.tenant == self.tenant:
                    kind, asset = finding.asset.kind.value, finding.asset.name
                    self._usable(
                        links_of(self.tenant, kind, asset, entities_of(finding.evidence)), kind, asset
                    )
        changes = [change for change in map(self._add, ordered) if change is not None]
        live = {self._root(c.incident.id) for c in changes}
        for incident_id in live:
            _materialise(self._tracked[incident_id])
        # An incident changed twice is reported once, with its latest state; merged-away ones are not.
        latest: dict[str, IncidentChange] = {}
        for change in changes:
            root = self._root(change.incident.id)
            if root != change.incident.id:
                continue
            previous = latest.get(root)
            if previous is not None:
                change.created = change.created or previous.created
                change.state_changed = change.state_changed or previous.state_changed
                change.merged = previous.merged + change.merged
            latest[root] = change
        return list(latest.values())


def _materialise(tracked: _Tracked) -> None:
    """Rebuild the lists that follow from the timeline (sorted once, not after every add)."""
    incident = tracked.incident
    incident.timeline.sort(key=entry_key)
    timeline = incident.timeline
    incident.tactics = sorted(tracked.tactics, key=tactic_index)
    incident.finding_fingerprints = [e["fingerprint"] for e in timeline]
    incident.assets = list(dict.fromkeys(e["asset"] for e in timeline))
    entities: dict[str, dict[str, None]] = {}
    for entry in timeline:
        for kind, values in entry.get("entities", {}).items():
            bucket = entities.setdefault(kind, {})
            for value in values:
                bucket.setdefault(value, None)
    incident.entities = {kind: list(values) for kind, values in entities.items()}
    incident.sources = list(incident.entities.get("ip", []))
    times = [t for t in (parse_time(e.get("time")) for e in timeline) if t is not None]
    incident.first_seen = min(times, default=None)
    incident.last_seen = max(times, default=None)
    where = (
        incident.assets[0]
        if len(incident.assets) == 1
        else f"{incident.assets[0]} and {len(incident.assets) - 1} more"
    )
    what = TACTIC_NAMES[incident.stage] if incident.stage else "Suspicious activity"
    incident.title = f"{what} on {where}" + (f" from {incident.sources[0]}" if incident.sources else "")
    tracked.dirty = False


def correlate(
    findings: Iterable[Finding],
    *,
    tenant: str | None = None,
    window: timedelta = DEFAULT_WINDOW,
    resolver: TechniqueResolver | None = None,
    fanout: int | None = DEFAULT_FANOUT,
) -> list[Incident]:
    """Batch correlation: the incidents these findings form, oldest first.

    `tenant` defaults to the first finding's; findings of other tenants are never mixed in. `fanout`
    None: no limit on how many assets a link may join.
    """
    items = list(findings)
    if not items:
        return []
    correlator = Correlator(
        tenant=tenant or items[0].asset.tenant, window=window, resolver=resolver, fanout=fanout
    )
    correlator.add_all(items)
    return correlator.incidents
