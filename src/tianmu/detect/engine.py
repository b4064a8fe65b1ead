"""The detection engine: compiled rules in, events in, findings of kind `detection` out.

Per event: (1) the event's kind (EVTX channel and event id, syslog program...) selects, from a cache,
the rules of the log sources it belongs to and an Aho-Corasick automaton over those rules' required
literals; (2) one pass of that automaton over the event's lower-cased values picks the candidate rules;
(3) only candidates (and the few rules without required literals) run their compiled closures. Most rules
are never evaluated for most events.

`detect_paths` runs files in parallel across processes (fork: workers inherit the compiled detector),
then correlates the sightings of all files in time order and returns findings sorted by time.

Memory stays bounded on one big log (`DetectLimits`): a rule matching every line of a file keeps its
first findings there and counts the rest, and the sightings kept for correlations are capped; each
limit hit is a note of the result, never a silent loss.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ahocorasick_rs

from tianmu.core.forking import fork_map
from tianmu.core.models import Asset, Event, Finding, FindingKind, Severity
from tianmu.core.walk import WalkRules, WalkSkips
from tianmu.detect.compiler import (
    CompiledCorrelation,
    CompiledRule,
    Matcher,
    View,
    build,
    without_surrogates,
)
from tianmu.detect.correlation import CorrelationHit, Sighting, correlate
from tianmu.detect.kb import RuleBase
from tianmu.detect.logsource import event_source, rule_applies, sources_of
from tianmu.readers._common import ReadStats
from tianmu.readers.limits import ReadLimits
from tianmu.readers.sources import find_log_files, iter_file_events

__all__ = [
    "DetectLimits",
    "DetectResult",
    "Detector",
    "detect_paths",
    "event_entities",
    "finish_results",
    "scan_events",
    "severity_of",
]

_LEVELS = {
    "critical": Severity.CRITICAL,
    "high": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "informational": Severity.INFO,
}


def severity_of(level: str) -> Severity:
    return _LEVELS.get(level.lower(), Severity.MEDIUM)


@dataclass(frozen=True, slots=True)
class DetectLimits:
    """What one pass keeps, so that memory does not grow with the size of a log."""

    max_findings_per_rule: int = 1000
    """Findings one rule makes in one file; further matches there are counted, in a note."""
    max_sightings: int = 250_000
    """Sightings kept for correlations by one pass (a worker's share of the files); beyond, counted."""


@dataclass(slots=True)
class _KindPlan:
    automaton: Any
    pattern_rules: list[tuple[int, ...]]
    always: tuple[int, ...]


class Detector:
    """Compiled matchers of a rule base; one per process, reused for every event."""

    def __init__(self, base: RuleBase, limits: DetectLimits | None = None) -> None:
        self.limits = limits or DetectLimits()
        self.rules: list[CompiledRule] = base.rules
        self.correlations: list[CompiledCorrelation] = base.correlations
        # Closures are built on a rule's first evaluation: the prefilter means most rules never are.
        self._matchers: list[Matcher | None] = [None] * len(base.rules)
        self._plans: dict[tuple[Any, ...], _KindPlan] = {}
        # Rules grouped by log source: a new kind of event is checked against each group, not each rule.
        self._by_logsource: dict[tuple[str | None, str | None, str | None], list[int]] = {}
        for index, rule in enumerate(base.rules):
            source = rule.logsource
            key = (source.get("product"), source.get("category"), source.get("service"))
            self._by_logsource.setdefault(key, []).append(index)
        # Fields each base rule's sightings must carry for the correlations that count it.
        self.sighting_fields: dict[str, set[str]] = {}
        correlation_ids = {c.id for c in base.correlations}
        for corr in base.correlations:
            for rule_id in corr.rule_ids:
                wanted = self.sighting_fields.setdefault(rule_id, set())
                for name in corr.group_by:
                    wanted.add(corr.aliases.get(name, {}).get(rule_id, name).lower())
                if corr.value_field:
                    wanted.add(corr.value_field.lower())
        self.correlated = {rule_id for rule_id in self.sighting_fields if rule_id not in correlation_ids}
        self.evaluations = 0

    def _plan(self, key: tuple[Any, ...]) -> _KindPlan:
        source = sources_of(key)
        by_literal: dict[str, list[int]] = {}
        always: list[int] = []
        applicable = [
            index
            for (product, category, service), indexes in self._by_logsource.items()
            if rule_applies({"product": product, "category": category, "service": service}, source)
            for index in indexes
        ]
        for index in sorted(applicable):
            literals = self.rules[index].literals
            if literals is None:
                always.append(index)
            else:
                for literal in literals:
                    by_literal.setdefault(literal, []).append(index)
        patterns = list(by_literal)
        automaton = ahocorasick_rs.AhoCorasick(patterns) if patterns else None
        plan = _KindPlan(automaton, [tuple(by_literal[p]) for p in patterns], tuple(always))
        self._plans[key] = plan
        return plan

    def match(self, event: Event) -> tuple[list[int], View]:
        """Indexes of the rules that match, and the event's view (for the matched fields)."""
        low: dict[str, str] = {}
        orig: dict[str, str] = {}
        for name, value in event.fields.items():
            text = value if type(value) is str else str(value)
            key = name.lower()
            orig[key] = text
            low[key] = text.lower()
        kind = event_source(event)
        plan = self._plans.get(kind) or self._plan(kind)
        candidates = set(plan.always)
        if plan.automaton is not None:
            haystack = "\n".join(low.values())
            rules = plan.pattern_rules
            try:
                found = plan.automaton.find_matches_as_indexes(haystack, overlapping=True)
            except UnicodeEncodeError:
                found = plan.automaton.find_matches_as_indexes(without_surrogates(haystack), overlapping=True)
            for index in {m[0] for m in found}:
                candidates.update(rules[index])
        view = (low, orig)
        self.evaluations += len(candidates)
        matchers = self._matchers
        hits = []
        for index in sorted(candidates):
            matcher = matchers[index]
            if matcher is None:
                matcher = matchers[index] = build(self.rules[index].plan)
            if matcher(view):
                hits.append(index)
        return hits, view


# --- findings ---------------------------------------------------------------------------------------------

_IP_FIELDS = (
    "src_ip", "dest_ip", "c-ip", "ipaddress", "sourceip", "destinationip", "rhost", "src", "dst",
    "client_ip", "clientaddress", "sourceaddress", "destaddress", "addr",
)  # fmt: skip
_USER_FIELDS = (
    "user", "target_user", "targetusername", "subjectusername", "cs-username", "accountname", "username",
    "acct", "auid_name",
)  # fmt: skip
_HOST_FIELDS = ("host", "computer", "workstation", "workstationname", "_hostname", "hostname", "node")
_DOMAIN_FIELDS = ("queryname", "dns.rrname", "http.hostname", "tls.sni", "cs-host", "destinationhostname")
_PROCESS_FIELDS = ("image", "parentimage", "newprocessname", "exe")
_FILE_FIELDS = ("targetfilename", "imageloaded", "objectname")
_HASH = re.compile(r"(?:SHA256|SHA1|MD5|IMPHASH)=([0-9A-Fa-f]{32,64})")
_EMPTY = frozenset({"", "-", "::", "0.0.0.0", "n/a", "none", "null"})


def _ip(value: str) -> str | None:
    text = value.strip().strip("[]")
    for candidate in (text, text.rsplit(":", 1)[0] if text.count(":") == 1 else text):
        try:
            return str(ipaddress.ip_address(candidate.removeprefix("::ffff:")))
        except ValueError:
            continue
    return None


def event_entities(orig: dict[str, str]) -> dict[str, list[str]]:
    """Entities (Finding evidence convention) named in an event's fields."""
    found: dict[str, list[str]] = {}

    def add(kind: str, value: str | None) -> None:
        if value and value.lower() not in _EMPTY:
            bucket = found.setdefault(kind, [])
            if value not in bucket:
                bucket.append(value)

    for name in _IP_FIELDS:
        if name in orig:
            add("ip", _ip(orig[name]))
    for name in _USER_FIELDS:
        add("user", orig.get(name))
    for name in _HOST_FIELDS:
        add("host", orig.get(name))
    for name in _DOMAIN_FIELDS:
        value = orig.get(name)
        add("domain", value.lower().rstrip(".") if value else None)
    for name in _PROCESS_FIELDS:
        add("process", orig.get(name))
    for name in _FILE_FIELDS:
        add("file", orig.get(name))
    for name in ("hashes", "hash", "sha256", "md5", "sha1"):
        value = orig.get(name)
        if value:
            for digest in _HASH.findall(value) or (
                [value] if re.fullmatch(r"[0-9A-Fa-f]{32,64}", value) else []
            ):
                add("hash", digest.lower())
    if "http.url" in orig or "cs-uri" in orig:
        add("url", orig.get("http.url") or orig.get("cs-uri"))
    return found


def _relative(path: str, root: Path | None) -> str:
    if root is None:
        return path
    base = str(root)
    if path == base:
        return Path(path).name
    prefix = base.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def _is_evtx_file(event: Event) -> bool:
    """EVTX records are located by record number; the same records exported as JSON lines, by line."""
    if event.source_type != "evtx":
        return False
    name = event.origin.path.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    return name.endswith(".evtx")


def _evidence_pointer(event: Event, root: Path | None) -> dict[str, Any]:
    pointer: dict[str, Any] = {"path": _relative(event.origin.path, root)}
    pointer["record" if _is_evtx_file(event) else "line"] = event.origin.line
    pointer["time"] = event.timestamp.isoformat() if event.timestamp else None
    return pointer


def rule_finding(rule: CompiledRule, event: Event, view: View, asset: Asset, root: Path | None) -> Finding:
    orig = view[1]
    pointer = _evidence_pointer(event, root)
    entities = event_entities(dict(orig))
    names = {name.lower(): name for name in event.fields}
    matched = {names[f]: event.fields[names[f]] for f in rule.fields if f in names}
    place = {"path": pointer["path"], "record": event.origin.line}
    return Finding(
        kind=FindingKind.DETECTION,
        rule_id=rule.id,
        title=rule.title,
        severity=severity_of(rule.level),
        asset=asset,
        summary=rule.description,
        evidence={**pointer, "entities": entities, "fingerprint_extra": place},
        references=rule.references,
        techniques=rule.techniques,
        data={
            # The tags (attack.persistence...) let correlation place a detection on the kill chain
            # even when the ATT&CK base is not imported.
            "rule": {
                "id": rule.id,
                "title": rule.title,
                "level": rule.level,
                "path": rule.path,
                "tags": list(rule.tags),
            },
            "attack": list(rule.techniques),
            "event": {"path": pointer["path"], "record": event.origin.line, "time": pointer["time"]},
            "fields": matched,
            "source_type": event.source_type,
        },
    )


def correlation_finding(hit: CorrelationHit, asset: Asset) -> Finding:
    corr = hit.correlation
    evidence = [item for s in hit.sightings for item in s.evidence]
    last = evidence[-1] if evidence else {}
    entities: dict[str, list[str]] = {}
    for s in hit.sightings:
        for kind, values in s.entities.items():
            bucket = entities.setdefault(kind, [])
            bucket.extend(v for v in values if v not in bucket)
    time = datetime.fromtimestamp(hit.time, UTC).isoformat()
    return Finding(
        kind=FindingKind.DETECTION,
        rule_id=corr.id,
        title=corr.title,
        severity=severity_of(corr.level),
        asset=asset,
        summary=corr.description,
        evidence={
            "path": last.get("path"),
            "record" if "record" in last else "line": last.get("record", last.get("line")),
            "time": time,
            "entities": entities,
            "fingerprint_extra": {"group": hit.group},
        },
        references=corr.references,
        techniques=corr.techniques,
        data={
            "rule": {
                "id": corr.id,
                "title": corr.title,
                "level": corr.level,
                "path": corr.path,
                "tags": list(corr.tags),
            },
            "attack": list(corr.techniques),
            "event": {"path": last.get("path"), "record": last.get("record", last.get("line")), "time": time},
            "fields": dict(hit.group),
            "correlation": {"type": corr.type, "count": hit.count, "events": evidence[:100]},
        },
    )


# --- running over files -----------------------------------------------------------------------------------


@dataclass(slots=True)
class DetectResult:
    findings: list[Finding] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)
    sightings: list[Sighting] = field(default_factory=list)
    evaluations: int = 0
    untimed_sightings: int = 0
    per_rule: dict[tuple[str, str], int] = field(default_factory=dict)
    """Matches of each (rule id, file): findings up to the limit, the rest only counted."""
    dropped_sightings: int = 0
    """Sightings not kept for correlations because `DetectLimits.max_sightings` was reached."""

    walk_notes: list[str] = field(default_factory=list)
    """What the walk of the folders left out (pseudo and other file systems, excluded, FIFOs)."""
    limit_notes: list[str] = field(default_factory=list)
    """What `DetectLimits` left out (`notes()`, set by `detect_paths` once the result is whole)."""

    def notes(self, limits: DetectLimits, root: Path | None = None) -> list[str]:
        """What the limits left out, one note per (rule, file) and one for sightings."""
        cap = limits.max_findings_per_rule
        notes = [
            f"detection: rule {rule_id} matched {count} events in {_relative(path, root)}; "
            f"the first {cap} are findings (limit max_findings_per_rule)"
            for (rule_id, path), count in self.per_rule.items()
            if count > cap
        ]
        if self.dropped_sightings:
            notes.append(
                f"detection: {self.dropped_sightings} rule matches were not kept for correlations "
                f"(limit max_sightings = {limits.max_sightings}); correlations may have been missed"
            )
        return notes


def scan_events(
    detector: Detector, events: Iterable[Event], asset: Asset, root: Path | None, result: DetectResult
) -> None:
    """Run the detector over events: findings of output rules, sightings for the correlations.

    Bounded by `detector.limits`: per (rule, file) only the first findings are made, and only so many
    sightings kept; what is left out is counted in `result` (see `DetectResult.notes`).
    """
    rules = detector.rules
    limits = detector.limits
    per_rule = result.per_rule
    for event in events:
        hits, view = detector.match(event)
        for index in hits:
            rule = rules[index]
            if rule.output:
                key = (rule.id, event.origin.path)
                count = per_rule[key] = per_rule.get(key, 0) + 1
                if count <= limits.max_findings_per_rule:
                    result.findings.append(rule_finding(rule, event, view, asset, root))
            wanted = detector.sighting_fields.get(rule.id)
            if wanted is not None:
                if event.timestamp is None:
                    result.untimed_sightings += 1
                    continue
                if len(result.sightings) >= limits.max_sightings:
                    result.dropped_sightings += 1
                    continue
                orig = view[1]
                pointer = _evidence_pointer(event, root)
                result.sightings.append(
                    Sighting(
                        rule.id,
                        event.timestamp.timestamp(),
                        {name: orig[name] for name in wanted if name in orig},
                        (pointer,),
                        event_entities(dict(orig)),
                    )
                )


def finish_results(detector: Detector, parts: Iterable[DetectResult], asset: Asset) -> DetectResult:
    """Merge per-file (or per-worker) results, correlate their sightings, sort findings by event time."""
    total = DetectResult()
    for part in parts:
        total.findings.extend(part.findings)
        total.sightings.extend(part.sightings)
        total.stats.merge(part.stats)
        total.evaluations += part.evaluations
        total.untimed_sightings += part.untimed_sightings
        total.dropped_sightings += part.dropped_sightings
        for key, count in part.per_rule.items():
            total.per_rule[key] = total.per_rule.get(key, 0) + count
    for hit in correlate(detector.correlations, total.sightings):
        if hit.correlation.output:
            total.findings.append(correlation_finding(hit, asset))
    total.findings.sort(
        key=lambda f: (str(f.evidence.get("time") or ""), str(f.evidence.get("path")), f.rule_id)
    )
    return total


_PARALLEL_FROM = 16 << 20
"""Bytes of input from which files are read in parallel processes (when `workers` is not given)."""


def detect_paths(
    detector: Detector,
    paths: Sequence[Path],
    asset: Asset,
    *,
    root: Path | None = None,
    fmt: str | None = None,
    field_map: dict[str, str] | None = None,
    workers: int | None = None,
    all_files: bool = True,
    progress: Callable[[str], None] | None = None,
    walk: WalkRules | None = None,
    read_limits: ReadLimits | None = None,
) -> DetectResult:
    """`tianmu detect FILES`: the detector over log files and folders; correlated; sorted by time.

    Folders are walked under `walk` (the shared rules of every job); what was left out is in the
    result's `walk_notes`. `read_limits` bound every file's read (`ReadLimits()` by default)."""
    jobs: list[tuple[Path, bool]] = []
    skips = WalkSkips()
    for path in paths:
        if path.is_dir():
            found = find_log_files(path, all_files=all_files, rules=walk, skips=skips)
            jobs.extend((file, False) for file in found)
        else:
            jobs.append((path, True))
    if workers is None:
        # Forking, and sending findings back, costs more than it saves on a few megabytes of logs.
        size = sum(file.stat().st_size for file, _ in jobs if file.is_file())
        workers = min(len(jobs), os.cpu_count() or 1) if size > _PARALLEL_FROM else 1

    def scan_file(job: tuple[Path, bool]) -> DetectResult:
        # Named by the user (`strict`): an unknown format is an error; found in a folder: passed over.
        path, strict = job
        result = DetectResult()
        before = detector.evaluations
        events = iter_file_events(path, result.stats, fmt, field_map, strict=strict, limits=read_limits)
        scan_events(detector, events, asset, root, result)
        result.evaluations = detector.evaluations - before
        return result

    def reported(parts: Iterable[DetectResult]) -> Iterator[DetectResult]:
        for part in parts:
            if progress is not None:
                progress(str(part.stats.files))
            yield part

    # Forked workers inherit the compiled detector instead of unpickling it.
    result = finish_results(detector, reported(fork_map(scan_file, jobs, workers)), asset)
    result.stats.errors.extend(skips.errors)
    result.walk_notes.extend(skips.notes())
    result.limit_notes.extend(result.notes(detector.limits, root))
    return result
