"""Sigma correlation rules over a time-ordered stream of rule matches.

Types (Sigma correlation specification): `event_count` (at least N matches per group within the
timespan), `value_count` (at least N distinct values of a field), `temporal` (the referenced rules all
matched, in any order, within the timespan) and `temporal_ordered` (in the given order). Windows slide:
a group fires as soon as its condition holds over the last `timespan` seconds, and its window is then
cleared, so one burst makes one alert.

Inputs are `Sighting`s — a base rule's match, or a correlation's own hit, since correlations may refer
to correlations (failed logins counted by one, then "followed by a success" ordered by another). The
engine runs correlations in reference order over all sightings sorted by time, which is why detection
collects sightings from every file (and process) before correlating: files are not time-ordered
against each other. Sightings without a time cannot be placed in a window and are left out (counted).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tianmu.detect.compiler import CompiledCorrelation

__all__ = ["CorrelationHit", "Sighting", "correlate"]


@dataclass(frozen=True, slots=True)
class Sighting:
    """One match of a rule (or hit of a correlation) that correlations may count."""

    rule_id: str
    time: float
    """POSIX seconds."""
    fields: dict[str, str]
    """The event's values of the fields correlations group or count by (lower-case names)."""
    evidence: tuple[dict[str, Any], ...]
    """`{path, record|line, time}` of the events behind it (one for a base rule's match)."""
    entities: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CorrelationHit:
    correlation: CompiledCorrelation
    group: dict[str, str]
    sightings: tuple[Sighting, ...]
    count: int

    @property
    def time(self) -> float:
        return self.sightings[-1].time


def _group_value(correlation: CompiledCorrelation, name: str, sighting: Sighting) -> str | None:
    alias = correlation.aliases.get(name)
    source = alias.get(sighting.rule_id, name) if alias else name
    return sighting.fields.get(source.lower())


def _satisfied(op: str, value: float, count: float) -> bool:
    if op == "gte":
        return value >= count
    if op == "gt":
        return value > count
    if op == "eq":
        return value == count
    if op == "lte":
        return value <= count
    return value < count


def _run_one(correlation: CompiledCorrelation, sightings: Sequence[Sighting]) -> list[CorrelationHit]:
    hits: list[CorrelationHit] = []
    windows: dict[tuple[str | None, ...], deque[Sighting]] = {}
    span = correlation.timespan
    for sighting in sightings:
        group = tuple(_group_value(correlation, name, sighting) for name in correlation.group_by)
        if any(value is None for value in group):
            continue  # an event without a group-by field is in no group (as in SQL backends)
        window = windows.setdefault(group, deque())
        window.append(sighting)
        while window and sighting.time - window[0].time > span:
            window.popleft()
        kind = correlation.type
        if kind == "event_count":
            value = float(len(window))
        elif kind == "value_count":
            field_name = (correlation.value_field or "").lower()
            value = float(
                len({s.fields.get(field_name) for s in window if s.fields.get(field_name) is not None})
            )
        elif kind == "temporal":
            value = float(len({s.rule_id for s in window}))
        else:  # temporal_ordered: the rules' first sightings must come in the given order
            value = float(_ordered_prefix(correlation.rule_ids, window))
        if _satisfied(correlation.op, value, correlation.count):
            if kind == "temporal_ordered" and value < len(correlation.rule_ids):
                continue
            names = dict(zip(correlation.group_by, (str(v) for v in group), strict=True))
            hits.append(CorrelationHit(correlation, names, tuple(window), int(value)))
            window.clear()
    return hits


def _ordered_prefix(order: Sequence[str], window: Sequence[Sighting]) -> int:
    """How many of `order` occur in the window one after the other (greedy, earliest first)."""
    stage = 0
    for sighting in window:
        if stage < len(order) and sighting.rule_id == order[stage]:
            stage += 1
    return stage


def _hit_sighting(hit: CorrelationHit) -> Sighting:
    evidence = tuple(item for s in hit.sightings for item in s.evidence)
    entities: dict[str, list[str]] = {}
    for s in hit.sightings:
        for kind, values in s.entities.items():
            bucket = entities.setdefault(kind, [])
            bucket.extend(v for v in values if v not in bucket)
    fields: dict[str, str] = {}
    for s in hit.sightings:
        fields.update(s.fields)
    fields.update({name.lower(): value for name, value in hit.group.items()})
    return Sighting(hit.correlation.id, hit.time, fields, evidence, entities)


def correlate(
    correlations: Sequence[CompiledCorrelation], sightings: Sequence[Sighting]
) -> list[CorrelationHit]:
    """Every correlation's hits; correlations referring to correlations see those hits as sightings."""
    by_rule: dict[str, list[Sighting]] = {}
    for sighting in sorted(sightings, key=lambda s: s.time):
        by_rule.setdefault(sighting.rule_id, []).append(sighting)
    pending = list(correlations)
    ids = {c.id for c in correlations}
    done: set[str] = set()
    hits: list[CorrelationHit] = []
    while pending:
        ready = [c for c in pending if all(r in done or r not in ids for r in c.rule_ids)]
        if not ready:  # a reference cycle: run what is left as it is
            ready = pending[:1]
        for correlation in ready:
            pending.remove(correlation)
            inputs = sorted(
                (s for rule_id in dict.fromkeys(correlation.rule_ids) for s in by_rule.get(rule_id, [])),
                key=lambda s: s.time,
            )
            found = _run_one(correlation, inputs)
            hits.extend(found)
            by_rule.setdefault(correlation.id, []).extend(_hit_sighting(hit) for hit in found)
            by_rule[correlation.id].sort(key=lambda s: s.time)
            done.add(correlation.id)
    return hits
