"""Components in, vulnerability findings out: the OSV matcher.

`VulnMatcher(store).match(components, asset)`:

1. Components are grouped by (base ecosystem, normalised name) — for Debian/Ubuntu/Alpine and other
   distributions by the *source* package (`Component.source_name`, falling back to the name), since
   distribution advisories are written against source packages.
2. The candidate `affected_packages` rows of non-withdrawn advisories are fetched with one indexed query
   per ecosystem and chunk of ≤500 names, and compiled once (`ranges.CompiledAffected`).
3. Each component is evaluated by the OSV algorithm (`ranges` module). A distribution entry scoped to a
   release (`Debian:12`) only applies to a component of that release (`distro_release`, or the
   component's own `Debian:12` ecosystem); without a known component release every release applies.
4. Advisories matched for one component that share an id or alias (PYSEC-x and GHSA-y both aliasing
   CVE-z) become one finding. Its primary id (`rule_id`) is the lowest by (namespace preference, id):
   ecosystem-native ids (PYSEC, GO, RUSTSEC, DSA, ...) before GHSA before CVE; every other id of the
   group goes to `aliases`.
5. Severity comes from CVSS vectors (the package-level `affected[].severity` when present, else the
   record's): CVSS v3.x preferred, then v4, then v2, scored with the `cvss` library; failing that the
   GHSA-style `database_specific.severity` word. `data["severity_source"]` says which (`cvss`, `ghsa`).
6. KEV and EPSS are joined on every CVE id of the group (EPSS: the highest score).
7. An advisory that publishes no severity (the Go database, most PYSEC records) is *unscored*:
   `data["unscored"] = True`, `score` None, and every report shows it so (`medium (unscored)`). Its
   severity, used only to rank and for thresholds, comes from what is known about its exploitation:
   listed in CISA KEV → HIGH (CRITICAL when KEV knows of ransomware use), source `kev`; else an EPSS
   probability ≥ 50 % → HIGH, ≥ 10 % → MEDIUM, below → LOW, source `epss` (EPSS is a 30-day
   probability; 10 % is about the top 5 % of scored CVEs, 50 % the top 1 %); else MEDIUM by default,
   source `unknown`. EPSS never makes a finding critical: only exploitation seen in the wild does.
   A scored advisory listed in KEV is raised to at least HIGH (source `kev`) but stays scored.
   The cut-offs and the ranking live in `tianmu.vulns.severity`; docs/risk.md states them.
8. A PyPI package the distribution installed (`Component.distro_package`) is not reported with upstream
   ranges as if they applied: `tianmu.vulns.backports` drops or marks its matches, and says so.

`last_stats` holds counters of the latest run, including ranges skipped (GIT ranges, ranges of
unordered ecosystems, ranges with unparsable bounds — see `ranges`).
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from tianmu.core.engine import EngineResult, InputKind, Inputs, JobContext, Requirements
from tianmu.core.models import Asset, Component, Finding, FindingKind, Severity
from tianmu.store.bulk import chunks, select_in
from tianmu.store.database import Store
from tianmu.store.schema import advisories, affected_packages, epss_scores, kev_entries
from tianmu.vulns.backports import apply_backports, owner_of
from tianmu.vulns.osv import DISTRO_ECOSYSTEMS, normalize_name, split_ecosystem
from tianmu.vulns.ranges import CompiledAffected, RangeMatch
from tianmu.vulns.severity import (
    UNSCORED_DEFAULT,
    advisory_severity,
    cvss_severity,
    epss_severity,
    kev_severity,
)
from tianmu.vulns.versions import version_key

__all__ = ["VulnEngine", "VulnMatcher", "cvss_severity", "sort_findings", "unchecked_notes", "unscored_note"]

Key = tuple[str, str]


def _release(text: str | None) -> str | None:
    """Comparable release: `22.04:LTS` and `Pro:22.04:LTS` → `22.04`, `v3.18` → `3.18`."""
    if not text:
        return None
    parts = [p for p in text.split(":") if p and p not in ("LTS", "Pro")]
    return parts[0].lstrip("v") if parts else None


def _id_rank(vid: str) -> tuple[int, str]:
    upper = vid.upper()
    rank = 2 if upper.startswith("CVE-") else 1 if upper.startswith("GHSA-") else 0
    return (rank, vid)


def _sorted_versions(ecosystem: str, versions: Iterable[str]) -> list[str]:
    unique = sorted(set(versions))
    keys = [version_key(ecosystem, v) or version_key(ecosystem, v, "SEMVER") for v in unique]
    if all(k is not None for k in keys):
        try:
            return [v for _k, v in sorted(zip(keys, unique, strict=True), key=lambda kv: kv[0])]
        except TypeError:
            pass
    return unique


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a match allocates its (acyclic) findings.

    Building ~100k findings triggers repeated full collections that scan every live object: measured on
    the shared data, that was 40 % of the matching time. Nothing allocated here forms reference
    cycles, and the collector is re-enabled (if it was enabled) before returning.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class VulnMatcher:
    """Matches software components against the OSV advisories in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.last_stats: dict[str, int] = {}
        self.last_notes: list[str] = []
        """What the latest run decided about distribution-owned packages (`tianmu.vulns.backports`)."""

    def _component_key(self, component: Component) -> tuple[Key, str | None]:
        ecosystem, suffix = split_ecosystem(component.ecosystem)
        name = component.name
        release = component.distro_release
        if ecosystem in DISTRO_ECOSYSTEMS:
            name = component.source_name or component.name
            release = release or suffix
        return (ecosystem, normalize_name(ecosystem, name)), _release(release)

    def _load(self, conn: Connection, keys: Iterable[Key]) -> dict[Key, list[CompiledAffected]]:
        names: dict[str, list[str]] = defaultdict(list)
        for ecosystem, name in keys:
            names[ecosystem].append(name)
        ap = affected_packages
        out: dict[Key, list[CompiledAffected]] = defaultdict(list)
        for ecosystem, wanted in names.items():
            for part in chunks(sorted(set(wanted))):
                query = (
                    select(
                        ap.c.advisory_id,
                        ap.c.name,
                        ap.c.ecosystem_full,
                        ap.c.versions,
                        ap.c.ranges,
                        ap.c.ecosystem_specific,
                        ap.c.severity,
                    )
                    .join(advisories, advisories.c.id == ap.c.advisory_id)
                    .where(ap.c.ecosystem == ecosystem, ap.c.name.in_(part), advisories.c.withdrawn.is_(None))
                )
                for row in conn.execute(query):
                    release = (
                        split_ecosystem(row.ecosystem_full)[1] if ecosystem in DISTRO_ECOSYSTEMS else None
                    )
                    compiled = CompiledAffected.compile(
                        row.advisory_id,
                        ecosystem,
                        row.ecosystem_full,
                        _release(release),
                        row.versions or [],
                        row.ranges or [],
                        row.ecosystem_specific,
                    )
                    compiled.severity = row.severity
                    out[(ecosystem, row.name)].append(compiled)
        return out

    def match(self, components: Sequence[Component], asset: Asset) -> list[Finding]:
        """Findings for every component affected by a non-withdrawn advisory, ranked by `sort_findings`."""
        with _gc_paused():
            return self._match(components, asset)

    def _match(self, components: Sequence[Component], asset: Asset) -> list[Finding]:
        keyed = [(c, *self._component_key(c)) for c in components if c.version]
        with self.store.connect() as conn:
            candidates = self._load(conn, {key for _c, key, _r in keyed})
            # per component: advisory id -> (compiled entry, match)
            hits: list[tuple[Component, dict[str, tuple[CompiledAffected, RangeMatch]]]] = []
            for component, key, release in keyed:
                found: dict[str, tuple[CompiledAffected, RangeMatch]] = {}
                for entry in candidates.get(key, ()):
                    if entry.release and release and entry.release != release:
                        continue
                    result = entry.match(component.version)
                    if result is not None and entry.advisory_id not in found:
                        found[entry.advisory_id] = (entry, result)
                if found:
                    hits.append((component, found))
            matched_ids = {vid for _c, found in hits for vid in found}
            adv = {r.id: r for r in select_in(conn, list(advisories.c), advisories.c.id, matched_ids)}
            cves = {
                a for r in adv.values() for a in [r.id, *(r.aliases or [])] if a.upper().startswith("CVE-")
            }
            kev = {r.cve_id: r for r in select_in(conn, list(kev_entries.c), kev_entries.c.cve_id, cves)}
            epss = {r.cve_id: r for r in select_in(conn, list(epss_scores.c), epss_scores.c.cve_id, cves)}
            owners = {o.ecosystem for c, _found in hits if (o := owner_of(c)) is not None}
            imported = _present(conn, owners)
        neighbours = _alias_neighbours(adv)
        groups = _GroupCache(adv, kev, epss)
        for _component, found in hits:
            for vid, (entry, _m) in found.items():
                if entry.severity and vid not in groups.package_severity:
                    groups.package_severity[vid] = entry.severity
        findings = [
            _finding(component, group, groups.get(tuple(vid for vid, _e, _m in group)), asset)
            for component, found in hits
            for group in _merge_groups(found, neighbours)
        ]
        matched = len(findings)
        findings, self.last_notes = apply_backports(findings, components, imported)
        self.last_stats = {
            "components": len(components),
            "candidate_entries": sum(len(v) for v in candidates.values()),
            "skipped_ranges": sum(e.skipped_ranges for v in candidates.values() for e in v),
            "findings": len(findings),
            "backported": matched - len(findings),
        }
        return sort_findings(findings)


@dataclass(slots=True)
class _Group:
    """What a finding takes from its advisories, computed once per group of ids and match() call."""

    ids: tuple[str, ...]
    aliases: tuple[str, ...]
    title: str
    summary: str
    references: tuple[str, ...]
    severity: Severity
    score: float | None
    vector: str | None
    severity_source: str
    unscored: bool
    kev: dict[str, Any] | None
    epss: float | None
    epss_percentile: float | None
    published: str | None


_SOURCE_RANK = {"cvss": 2, "ghsa": 1, "unknown": 0}


class _GroupCache:
    def __init__(self, adv: dict[str, Any], kev: dict[str, Any], epss: dict[str, Any]) -> None:
        self.adv, self.kev, self.epss = adv, kev, epss
        self.groups: dict[tuple[str, ...], _Group] = {}
        self.package_severity: dict[str, Any] = {}

    def get(self, matched_ids: tuple[str, ...]) -> _Group:
        """The group of these advisory ids (given in any order; keyed as given, sorted once)."""
        group = self.groups.get(matched_ids)
        if group is None:
            group = self.groups[matched_ids] = self._build(tuple(sorted(matched_ids, key=_id_rank)))
        return group

    def _build(self, ids: tuple[str, ...]) -> _Group:
        records = [self.adv[vid] for vid in ids]
        every = {vid for r in records for vid in [r.id, *(r.aliases or [])]}
        # The most informative severity of the group: CVSS beats a database word beats nothing.
        rated = [advisory_severity(r, self.package_severity.get(r.id)) for r in records]
        severity, score, vector, source = max(
            rated, key=lambda s: (_SOURCE_RANK[s[3]], s[1] or 0.0, s[0].rank)
        )
        summary = next((r.summary for r in records if r.summary), "")
        details = next((r.details for r in records if r.details), "")
        title = summary or _first_sentence(details) or ids[0]
        cve_ids = sorted(v for v in every if v.upper().startswith("CVE-"))
        kev_hit = next((self.kev[c] for c in cve_ids if c in self.kev), None)
        epss_rows = [self.epss[c] for c in cve_ids if c in self.epss]
        best = max(epss_rows, key=lambda r: r.score) if epss_rows else None
        kev_details = None
        if kev_hit is not None:
            kev_details = {
                "cve": kev_hit.cve_id,
                "date_added": kev_hit.date_added,
                "due_date": kev_hit.due_date,
                "ransomware": kev_hit.ransomware,
                "required_action": kev_hit.required_action,
            }
        unscored = source == "unknown"
        if kev_hit is not None and unscored:
            # Exploited in the wild (CISA's catalogue) says more than "no severity published": many
            # PYSEC records carry no CVSS at all, and "medium" would bury a flaw that is being used.
            severity, source = kev_severity(kev_hit.ransomware), "kev"
        elif kev_hit is not None and not severity.at_least(Severity.HIGH):
            severity, source = Severity.HIGH, "kev"
        elif unscored and best is not None:
            severity, source = epss_severity(float(best.score)), "epss"
        return _Group(
            ids=ids,
            aliases=tuple(sorted(every - {ids[0]})),
            title=title,
            summary=summary or details,
            references=tuple(dict.fromkeys(url for r in records for url in (r.references or []))),
            severity=severity,
            score=score,
            vector=vector,
            severity_source=source,
            unscored=unscored,
            kev=kev_details,
            epss=None if best is None else float(best.score),
            epss_percentile=None if best is None else float(best.percentile),
            published=records[0].published,
        )


def _first_sentence(text: str, limit: int = 140) -> str:
    """A title from a details text when the record has no summary (most PYSEC records): one line."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    end = line.find(". ")
    sentence = line[: end + 1] if 0 < end < limit else line
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def _finding(
    component: Component, matched: list[tuple[str, CompiledAffected, RangeMatch]], group: _Group, asset: Asset
) -> Finding:
    entry_of = {vid: entry for vid, entry, _m in matched}
    primary_entry = entry_of[group.ids[0]]
    if len(matched) == 1:
        fixed = list(matched[0][2].fixed_versions)  # already sorted by version
    else:
        fixed = _sorted_versions(
            primary_entry.ecosystem, (v for _vid, _e, m in matched for v in m.fixed_versions)
        )
    data: dict[str, Any] = {
        "fixed_versions": fixed,
        "kev": group.kev is not None,
        "kev_details": group.kev,
        "epss": group.epss,
        "epss_percentile": group.epss_percentile,
        "cvss_vector": group.vector,
        "ecosystem_specific": primary_entry.ecosystem_specific,
        "matched_by": "versions" if any(m.matched_by == "versions" for _v, _e, m in matched) else "range",
        "advisories": list(group.ids),
        "published": group.published,
        "severity_source": group.severity_source,
    }
    if group.unscored:
        data["unscored"] = True
    return Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id=group.ids[0],
        title=group.title,
        severity=group.severity,
        asset=asset,
        score=group.score,
        summary=group.summary,
        component=component,
        evidence={
            "installed_version": component.version,
            "package": component.name,
            "ecosystem": component.ecosystem,
        },
        aliases=group.aliases,
        references=group.references,
        data=data,
    )


def _alias_neighbours(adv: dict[str, Any]) -> dict[str, set[str]]:
    """For each advisory, the other advisories sharing an id or alias with it (most have none)."""
    holders: dict[str, list[str]] = defaultdict(list)
    for vid, row in adv.items():
        for token in {vid, *(row.aliases or [])}:
            holders[token].append(vid)
    out: dict[str, set[str]] = {}
    for sharing in holders.values():
        if len(sharing) > 1:
            for vid in sharing:
                out.setdefault(vid, set()).update(v for v in sharing if v != vid)
    return out


def _merge_groups(
    found: dict[str, tuple[CompiledAffected, RangeMatch]], neighbours: dict[str, set[str]]
) -> list[list[tuple[str, CompiledAffected, RangeMatch]]]:
    """Partition the advisories matched for one component into groups sharing an id or alias.

    Only advisories matched for this component connect: two advisories linked solely through a third
    that does not affect the component stay separate findings.
    """
    parent = {vid: vid for vid in found}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for vid in found:
        for other in neighbours.get(vid, ()):
            if other in parent:
                parent[root(other)] = root(vid)
    groups: dict[str, list[tuple[str, CompiledAffected, RangeMatch]]] = defaultdict(list)
    for vid in sorted(found):
        groups[root(vid)].append((vid, *found[vid]))
    return list(groups.values())


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """KEV first, then severity (worst first), then EPSS (highest first), scored before unscored, then
    id, then component."""

    def key(f: Finding) -> tuple[Any, ...]:
        epss = f.data.get("epss")
        comp = f.component
        return (
            0 if f.data.get("kev") else 1,
            -f.severity.rank,
            -(epss if isinstance(epss, float) else -1.0),
            # Among equals, a published severity before a rank by default.
            1 if f.data.get("unscored") else 0,
            f.rule_id,
            (comp.name, comp.version) if comp else ("", ""),
        )

    return sorted(findings, key=key)


class VulnEngine:
    """The vulnerability engine of the road: the inventory's components in, advisories that affect them
    out (OSV, with KEV and EPSS details)."""

    name = "vulnerability"
    requirements = Requirements(knowledge=frozenset({"vulns"}), inputs=frozenset({InputKind.COMPONENTS}))

    def __init__(self, store: Store) -> None:
        self.store = store
        self.matcher = VulnMatcher(store)

    def analyse(self, inputs: Inputs, job: JobContext) -> EngineResult:
        findings = self.matcher.match(inputs.components, job.asset)
        notes = [
            *unchecked_notes(self.store, inputs.components),
            *self.matcher.last_notes,
            *unscored_note(findings),
        ]
        return EngineResult(findings=findings, notes=notes)


def unscored_note(findings: Sequence[Finding]) -> list[str]:
    """Say how many findings rest on advisories that publish no severity, and how they were ranked.

    Without it a reader takes "132 medium" for 132 flaws someone rated medium.
    """
    unscored = [f for f in findings if f.data.get("unscored")]
    if not unscored:
        return []
    by_source = Counter(str(f.data.get("severity_source")) for f in unscored)
    count = len(unscored)
    return [
        f"vulnerability: {count} of {len(findings)} finding{'s' if len(findings) != 1 else ''} rest on "
        f"advisories that publish no severity, shown as unscored: ranked by KEV ({by_source['kev']}) "
        f"and EPSS ({by_source['epss']}) where known, else {UNSCORED_DEFAULT.value} by default "
        f"({by_source['unknown']})"
    ]


def _present(conn: Connection, ecosystems: Iterable[str]) -> set[str]:
    """The ecosystems some advisory of the store names (one indexed look-up each)."""
    return {
        ecosystem
        for ecosystem in ecosystems
        if conn.execute(
            select(affected_packages.c.id).where(affected_packages.c.ecosystem == ecosystem).limit(1)
        ).first()
        is not None
    }


def unchecked_notes(store: Store, components: Sequence[Component]) -> list[str]:
    """One note per ecosystem whose advisories were never imported: its components were not checked.

    Without it "no known vulnerability" would read as a verdict where nothing was looked at (900 Debian
    packages against no Debian data are not 900 safe packages).
    """
    counts: dict[str, int] = defaultdict(int)
    for component in components:
        if component.version:
            counts[split_ecosystem(component.ecosystem)[0]] += 1
    if not counts:
        return []
    with store.connect() as conn:
        present = _present(conn, counts)
    return [
        f"vulnerability: {ecosystem}: {count} component{'s' if count != 1 else ''} not checked — "
        f"no osv:{ecosystem} imported (`tianmu kb import` its OSV data or `tianmu kb update`)"
        for ecosystem, count in sorted(counts.items())
        if ecosystem not in present
    ]
