"""The OSV evaluation algorithm (osv-schema `docs/schema.md`, "Evaluation"), compiled once per entry.

An `affected[]` entry is turned into a `CompiledAffected`: its enumerated `versions` as a set, and each
`ECOSYSTEM`/`SEMVER` range as events pre-parsed into version keys and sorted. Evaluating a version is
then a few tuple/object comparisons:

    affected  ⇔  version ∈ versions                                        (when versions are listed)
    affected  ⇔  ∃ range: before_limits(v) ∧ timeline(v) ends "vulnerable"   (when they are not)

where the timeline walks the sorted events: `introduced` (`"0"` = before everything) switches on when
v ≥ it, `fixed` switches off when v ≥ it (exclusive bound), `last_affected` switches off when v > it
(inclusive bound), and `limit` events (if any; `*` = infinity) require v < at least one of them.

ENUMERATION_RULE. When an entry enumerates `versions`, that list decides and the ranges only give the
upgrade targets. The schema's evaluation is "in the list or in a range", but the lists osv.dev
publishes are those same ranges already evaluated against the registry's real release history with the
ecosystem's own ordering, and where the two disagree the list is the more precise statement: the ranges
(often derived from commits) are looser across backport branches and pre-releases. Measured on the
shared PyPI data, 2,145 (package, version, advisory) triples lie in a range but not in the list; by the
list those releases are not affected, and reporting them would flag fixed backports. Entries without a
list (39 PyPI records, all Go records, hand-written advisories) are matched on their ranges.

Skipped ranges, counted in `skipped_ranges` and never guessed at:
- `GIT` ranges: commit graphs need the repository. Ecosystem records (PyPI) also enumerate the
  versions those commits correspond to, which is what we match instead.
- ranges of an ecosystem without a known ordering, and ranges with a bound that is not a valid version
  in its ecosystem: evaluating them without the bound would either widen or narrow the range.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_version

from tianmu.vulns.versions import supports_ordering, version_key

__all__ = ["CompiledAffected", "CompiledRange", "RangeMatch", "canonical_version"]

_INTRODUCED, _FIXED, _LAST_AFFECTED = 0, 1, 2
_KINDS = {"introduced": _INTRODUCED, "fixed": _FIXED, "last_affected": _LAST_AFFECTED}


@functools.lru_cache(maxsize=262_144)
def canonical_version(ecosystem: str, version: str) -> str:
    """The spelling used for `versions`-list membership.

    Exact strings, except that PyPI versions compare in PEP 440 normal form (`1.0-rc1` is `1.0rc1`,
    `3.2.0` is `3.2`) and
    Go versions without their `v` (the Go database writes `1.2.3`, `go.mod` writes `v1.2.3`).
    """
    if ecosystem == "PyPI":
        # PEP 440 equality: `3.2.0` is `3.2`, `1.0-rc1` is `1.0rc1` (a `Django==3.2.0` pin installs 3.2).
        return canonicalize_version(version) if version_key("PyPI", version) is not None else version
    if ecosystem == "Go" and version[:1] == "v":
        return version[1:]
    return version


@dataclass(frozen=True, slots=True)
class RangeMatch:
    matched_by: str
    """`versions` (enumerated) or `range`."""
    fixed_versions: tuple[str, ...]
    """Fixed events above the version: the upgrade targets."""


@dataclass(slots=True)
class CompiledRange:
    range_type: str
    events: list[tuple[Any, int]]
    """(key, kind) sorted by key; key None is `introduced: "0"`."""
    limits: list[Any]
    fixed: list[tuple[Any, str]]

    def contains(self, key: Any) -> bool:
        if self.limits and not any(key < limit for limit in self.limits):
            return False
        vulnerable = False
        for bound, kind in self.events:
            if kind == _INTRODUCED:
                if bound is None or not key < bound:
                    vulnerable = True
                else:
                    break  # events are sorted: no later event can apply to a smaller version
            elif kind == _FIXED:
                if not key < bound:
                    vulnerable = False
                else:
                    break
            elif bound < key:  # last_affected: inclusive bound
                vulnerable = False
            elif key < bound:
                break
        return vulnerable

    def fixed_above(self, key: Any) -> list[tuple[Any, str]]:
        return [(bound, raw) for bound, raw in self.fixed if key < bound]


@dataclass(slots=True)
class CompiledAffected:
    advisory_id: str
    ecosystem: str
    ecosystem_full: str
    release: str | None
    versions: frozenset[str]
    ranges: list[CompiledRange] = field(default_factory=list)
    skipped_ranges: int = 0
    ecosystem_specific: Any = None
    severity: Any = None
    """Package-level `affected[].severity`, which takes precedence over the record's."""

    @classmethod
    def compile(
        cls,
        advisory_id: str,
        ecosystem: str,
        ecosystem_full: str,
        release: str | None,
        versions: list[str],
        ranges: list[dict[str, Any]],
        ecosystem_specific: Any = None,
    ) -> CompiledAffected:
        enumerated = frozenset(canonical_version(ecosystem, v) for v in versions) | frozenset(versions)
        compiled = cls(advisory_id, ecosystem, ecosystem_full, release, enumerated)
        compiled.ecosystem_specific = ecosystem_specific
        for rng in ranges:
            rtype = str(rng.get("type", ""))
            built = _compile_range(ecosystem, rtype, rng.get("events") or [])
            if built is None:
                compiled.skipped_ranges += 1
            else:
                compiled.ranges.append(built)
        return compiled

    def match(self, version: str) -> RangeMatch | None:
        """Whether `version` is affected, how, and which fixed versions lie above it."""
        in_list = version in self.versions or canonical_version(self.ecosystem, version) in self.versions
        hit_ranges: list[tuple[CompiledRange, Any]] = []
        if self.versions and not in_list:
            # An enumerated list is authoritative: see ENUMERATION_RULE in the module docstring.
            return None
        for rng in self.ranges:
            key = version_key(self.ecosystem, version, rng.range_type)
            if key is not None and rng.contains(key):
                hit_ranges.append((rng, key))
        if not in_list and not hit_ranges:
            return None
        fixed: list[tuple[Any, str]] = []
        if len(hit_ranges) == 1:
            # Common case: one range; its fixed bounds are sorted at compile time.
            rng, key = hit_ranges[0]
            above = tuple(dict.fromkeys(raw for bound, raw in rng.fixed if key < bound))
            return RangeMatch("versions" if in_list else "range", above)
        if hit_ranges:
            for rng, key in hit_ranges:
                fixed.extend(rng.fixed_above(key))
        else:
            # Matched by enumeration only: the upgrade targets are still the fixed bounds above it.
            for rng in self.ranges:
                key = version_key(self.ecosystem, version, rng.range_type)
                if key is not None:
                    fixed.extend(rng.fixed_above(key))
        return RangeMatch("versions" if in_list else "range", _sorted_unique(fixed))


def _sorted_unique(fixed: list[tuple[Any, str]]) -> tuple[str, ...]:
    seen: dict[str, Any] = {}
    for key, raw in fixed:
        seen.setdefault(raw, key)
    try:
        return tuple(sorted(seen, key=lambda raw: seen[raw]))
    except TypeError:  # keys of two range types (SEMVER and ECOSYSTEM) in one entry: fall back to text
        return tuple(sorted(seen))


def _compile_range(ecosystem: str, rtype: str, events: list[Any]) -> CompiledRange | None:
    if not supports_ordering(ecosystem, rtype):
        return None
    timeline: list[tuple[Any, int]] = []
    limits: list[Any] = []
    fixed: list[tuple[Any, str]] = []
    unlimited = False
    for event in events:
        if not isinstance(event, dict) or len(event) != 1:
            return None
        ((name, raw),) = event.items()
        raw = str(raw)
        if name == "introduced" and raw == "0":
            timeline.append((None, _INTRODUCED))
            continue
        if name == "limit" and "*" in raw:
            unlimited = True  # "*" is infinity: v < * always holds, so no limit can exclude v
            continue
        key = version_key(ecosystem, raw, rtype)
        if key is None:
            return None
        if name == "limit":
            limits.append(key)
        elif name in _KINDS:
            timeline.append((key, _KINDS[name]))
            if name == "fixed":
                fixed.append((key, raw))
        else:
            return None
    if not any(kind == _INTRODUCED for _key, kind in timeline):
        return None  # the schema requires an introduced event; without one nothing is affected
    # Python's sort is stable: events at the same version keep their order in the record.
    timeline.sort(key=_EventOrder)
    fixed.sort(key=lambda item: _EventOrder((item[0], 0)))
    return CompiledRange(rtype, timeline, [] if unlimited else limits, fixed)


class _EventOrder:
    """Sort key putting `introduced: "0"` (key None) before every version."""

    __slots__ = ("key",)

    def __init__(self, event: tuple[Any, int]) -> None:
        self.key = event[0]

    def __lt__(self, other: _EventOrder) -> bool:
        if self.key is None:
            return other.key is not None
        if other.key is None:
            return False
        return bool(self.key < other.key)
