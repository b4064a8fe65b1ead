"""Findings stored under the fingerprint scheme before findings were keyed on their files, found again.

Until issue 21 every finding was keyed (`Finding.fingerprint`) on the assessed root's asset and the
file's path relative to that root: `{tenant, asset: [kind, name], kind, rule, component: [ecosystem,
name, version, relative path], extra: fingerprint_extra naming the relative path}`. Now a record finding
(malware, detection, intel) and a vulnerability in a file's component are keyed on the file's absolute
place (`evidence["fingerprint_file"]`, set by `tianmu.road.places`). On an upgraded store each such
finding therefore gets a new fingerprint once; without this module the old row stays open beside the
new one and its triage (a false positive, an acknowledgement) is lost.

When a saved finding's fingerprint is new and it rests on a file, `predecessors` computes the
fingerprints the old scheme gave the same evidence and looks them up in the unique (tenant, fingerprint)
index:

- under the asset being assessed, with the path as this assessment shows it (the same root assessed
  again, however its files' paths were typed);
- under every stored asset that is the file or a folder above it, with the file's path relative to that
  asset (the same file found before from another root; a single-file asset's paths are relative to its
  folder).

A correlation (keyed on a list of files) is matched under the assessed asset only: under another root
its old sum may have counted other files. A match must also agree on kind and rule id. The save
(`repository._merge_findings`) then `adopt`s the matches: it rewrites one row's fingerprint in place and
deletes the others, each the same evidence found before from another root.

Why at save time and not a one-time Alembic data migration: the old row does not say whether its asset
was a folder or a single file, and the machine that migrates the database need not be the one that was
assessed, so the absolute file cannot always be rebuilt from the row, while the save knows it (the road
resolved it). The new key of a record also rests on the road's rebasing of `fingerprint_extra`, which the
store floor may not import; a migration would freeze a copy of it. And a migration rewrites every
finding of every tenant in one long transaction (100,000 rows, the table locked) and has to merge the
rows it makes collide, whereas the save costs a few index look-ups per finding whose fingerprint is new
and none for a finding found again (the steady state): plain SQL, the same on SQLite and PostgreSQL,
and it also matches old rows a worker still running the old version saves during the upgrade. The
price: an old row never found again (its file is gone) keeps its old fingerprint, as before.

Why the old row is rewritten rather than its triage copied to a new row: its id (API links, bulk triage
and their audit entries name findings by id), its first_seen (the problem is not new: risk ageing) and
its asset (the one that first found it, as `road.places` keeps it) stay. What names findings by
fingerprint follows it (`rekey_references`): an incident's findings and timeline, so the finding is not
added to its incident a second time, and the alert states `finding:<fp>` and `kev:<fp>`, so an alert
already delivered about it is not sent again.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, select, update

from tianmu.core.models import AssetKind, Finding, FindingKind, TriageStatus
from tianmu.core.serialize import storable
from tianmu.store.schema import assets, findings, situation_alert_state, situation_incidents

__all__ = ["Predecessor", "adopt", "old_fingerprint", "predecessors", "rekey_references"]

_CHUNK = 500

_SURVIVOR_RANK = {
    # The user's standing decision survives a merge; a resolved row is reopened when found anyway.
    TriageStatus.FALSE_POSITIVE.value: 0,
    TriageStatus.ACKNOWLEDGED.value: 1,
    TriageStatus.OPEN.value: 2,
    TriageStatus.RESOLVED.value: 3,
}


@dataclass(frozen=True, slots=True)
class Predecessor:
    """A stored row the old scheme keyed, found again under a new fingerprint."""

    id: int
    fingerprint: str
    status: str
    first_seen: datetime


def old_fingerprint(finding: Finding, asset: tuple[str, str], relative: str | None) -> str:
    """The fingerprint the old scheme gave `finding` found under `asset` (kind, name) with its file at
    `relative` (None: a correlation, whose key named no file)."""
    comp = finding.component
    key: dict[str, Any] = {
        "tenant": finding.asset.tenant,
        "asset": list(asset),
        "kind": finding.kind.value,
        "rule": finding.rule_id,
    }
    if comp is not None:
        path = comp.location.path if comp.location else None
        if finding.kind is FindingKind.VULNERABILITY and relative is not None:
            path = relative
        key["component"] = [comp.ecosystem, comp.name, comp.version, path]
    if "fingerprint_extra" in finding.evidence:
        extra = finding.evidence["fingerprint_extra"]
        absolute = finding.evidence.get("fingerprint_file")
        if isinstance(absolute, str) and relative is not None:
            extra = _relativised(extra, absolute, relative)
        key["extra"] = extra
    # As the current scheme does: an odd extra must not make the look-up raise.
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def predecessors(
    conn: Connection, tenant: str, found: Mapping[str, Finding], *, taken: Collection[str] = ()
) -> dict[str, list[Predecessor]]:
    """The tenant's stored rows of the old scheme that are the same evidence as the findings `found`
    (by their new fingerprints, none of them stored yet), by new fingerprint; see the module docstring.
    A row whose fingerprint is in `taken` (found as itself by the same save) is nobody's predecessor."""
    keyed = {fp: f for fp, f in found.items() if _file(f) is not None}
    if not keyed:
        return {}
    names: set[str] = set()
    for finding in keyed.values():
        file = _file(finding)
        if isinstance(file, str):
            names.update(_places_of(file))
    stored = _stored_assets(conn, tenant, names)
    wanted: dict[str, str] = {}
    for fingerprint, finding in keyed.items():
        for old in _old_fingerprints(finding, stored):
            if old not in taken:
                wanted.setdefault(old, fingerprint)
    out: dict[str, list[Predecessor]] = {}
    olds = list(wanted)
    for start in range(0, len(olds), _CHUNK):
        query = select(
            findings.c.id,
            findings.c.fingerprint,
            findings.c.kind,
            findings.c.rule_id,
            findings.c.status,
            findings.c.first_seen,
        ).where(and_(findings.c.tenant == tenant, findings.c.fingerprint.in_(olds[start : start + _CHUNK])))
        for row in conn.execute(query):
            fingerprint = wanted[row.fingerprint]
            finding = keyed[fingerprint]
            if row.kind != finding.kind.value or row.rule_id != storable(finding.rule_id):
                continue
            out.setdefault(fingerprint, []).append(
                Predecessor(int(row.id), row.fingerprint, row.status, row.first_seen)
            )
    return out


def adopt(conn: Connection, fingerprint: str, rows: Iterable[Predecessor]) -> Predecessor:
    """Give one of `rows` the new `fingerprint` and the earliest first_seen, delete the others (the
    same evidence, found before from other roots); the survivor, as it now is."""
    ordered = sorted(rows, key=lambda r: (_SURVIVOR_RANK.get(r.status, 2), r.first_seen, r.id))
    survivor, others = ordered[0], ordered[1:]
    first_seen = min(r.first_seen for r in ordered)
    if others:
        conn.execute(delete(findings).where(findings.c.id.in_([r.id for r in others])))
    conn.execute(
        update(findings)
        .where(findings.c.id == survivor.id)
        .values(fingerprint=fingerprint, first_seen=first_seen)
    )
    return Predecessor(survivor.id, fingerprint, survivor.status, first_seen)


def rekey_references(conn: Connection, tenant: str, renamed: Mapping[str, str]) -> None:
    """Point the tenant's incidents and alert states at the new fingerprints (`renamed`: old to new)."""
    if not renamed:
        return
    # Incidents hold fingerprints in JSON, which no index reaches; this runs only in the saves that
    # re-keyed something, and reads the timelines of the incidents concerned alone.
    listed = select(situation_incidents.c.id, situation_incidents.c.finding_fingerprints).where(
        situation_incidents.c.tenant == tenant
    )
    concerned = [
        row.id for row in conn.execute(listed) if set(row.finding_fingerprints or ()) & renamed.keys()
    ]
    for start in range(0, len(concerned), _CHUNK):
        query = select(
            situation_incidents.c.id,
            situation_incidents.c.finding_fingerprints,
            situation_incidents.c.timeline,
        ).where(situation_incidents.c.id.in_(concerned[start : start + _CHUNK]))
        for row in conn.execute(query).all():
            fingerprints = list(dict.fromkeys(renamed.get(fp, fp) for fp in row.finding_fingerprints or ()))
            timeline = [_renamed_entry(entry, renamed) for entry in row.timeline or ()]
            conn.execute(
                update(situation_incidents)
                .where(situation_incidents.c.id == row.id)
                .values(finding_fingerprints=fingerprints, timeline=timeline)
            )
    subjects = {
        f"{prefix}:{old}": f"{prefix}:{new}" for old, new in renamed.items() for prefix in ("finding", "kev")
    }
    keys = list(subjects)
    for start in range(0, len(keys), _CHUNK):
        query = select(
            situation_alert_state.c.id, situation_alert_state.c.rule, situation_alert_state.c.subject
        ).where(
            and_(
                situation_alert_state.c.tenant == tenant,
                situation_alert_state.c.subject.in_(keys[start : start + _CHUNK]),
            )
        )
        for row in conn.execute(query).all():
            new_subject = subjects[row.subject]
            # Several old rows of one finding: the first state moved is kept, the others would collide.
            taken = select(situation_alert_state.c.id).where(
                and_(
                    situation_alert_state.c.tenant == tenant,
                    situation_alert_state.c.rule == row.rule,
                    situation_alert_state.c.subject == new_subject,
                )
            )
            if conn.execute(taken).first() is None:
                conn.execute(
                    update(situation_alert_state)
                    .where(situation_alert_state.c.id == row.id)
                    .values(subject=new_subject)
                )
            else:
                conn.execute(delete(situation_alert_state).where(situation_alert_state.c.id == row.id))


def _renamed_entry(entry: Any, renamed: Mapping[str, str]) -> Any:
    if isinstance(entry, dict) and entry.get("fingerprint") in renamed:
        return {**entry, "fingerprint": renamed[entry["fingerprint"]]}
    return entry


def _file(finding: Finding) -> str | list[Any] | None:
    value = finding.evidence.get("fingerprint_file")
    return value if isinstance(value, str | list) and value else None


def _places_of(file: str) -> list[str]:
    """The file itself (a single-file asset) and every folder above it, as asset names."""
    path = file.partition("!")[0]
    out = [path]
    while True:
        parent = posixpath.dirname(path)
        if parent == path or not parent:
            return out
        out.append(parent)
        path = parent


def _relative_to(file: str, asset: str) -> str | None:
    """`file` as the old scheme wrote it under the asset named `asset`, if that asset contains it."""
    path, bang, member = file.partition("!")
    if path == asset:
        # A single file was assessed: its paths were relative to its folder.
        return posixpath.basename(path) + bang + member
    prefix = asset.rstrip("/") + "/"
    if path.startswith(prefix) and len(path) > len(prefix):
        return path[len(prefix) :] + bang + member
    return None


def _shown_path(finding: Finding) -> str | None:
    """The file's path as this assessment shows it (relative to the assessed root)."""
    if finding.kind is FindingKind.VULNERABILITY:
        location = finding.component.location if finding.component is not None else None
        return location.path if location is not None else None
    path = finding.evidence.get("path")
    return path if isinstance(path, str) and path else None


def _old_fingerprints(finding: Finding, stored: Mapping[str, list[str]]) -> set[str]:
    file = _file(finding)
    here = (finding.asset.kind.value, finding.asset.name)
    if not isinstance(file, str):
        return {old_fingerprint(finding, here, None)}
    out: set[str] = set()
    shown = _shown_path(finding)
    if shown is not None:
        out.add(old_fingerprint(finding, here, shown))
    # The file's own places, not every stored asset: a few look-ups per finding however many assets.
    for name in _places_of(file):
        relative = _relative_to(file, name) if name in stored else None
        if relative is None:
            continue
        for kind in stored[name]:
            out.add(old_fingerprint(finding, (kind, name), relative))
    return out


def _stored_assets(conn: Connection, tenant: str, names: set[str]) -> dict[str, list[str]]:
    """Of the asset names `names`, those the tenant has, with their kinds (names as given, not as stored:
    the old fingerprint was computed over the name before it was made storable)."""
    by_stored = {storable(name): name for name in names}
    out: dict[str, list[str]] = {}
    keys = list(by_stored)
    for start in range(0, len(keys), _CHUNK):
        query = select(assets.c.kind, assets.c.name).where(
            and_(
                assets.c.tenant == tenant,
                # Every kind named: the look-up then runs on the (tenant, kind, name) unique index.
                assets.c.kind.in_([k.value for k in AssetKind]),
                assets.c.name.in_(keys[start : start + _CHUNK]),
            )
        )
        for row in conn.execute(query):
            out.setdefault(by_stored[row.name], []).append(row.kind)
    return out


def _relativised(value: Any, absolute: str, relative: str) -> Any:
    """`value` with the absolute file put back as `relative`: the inverse of the road's rebasing (the
    whole string, or its `...@path` end as indicator places are written; inside dicts)."""
    if isinstance(value, str):
        if value == absolute:
            return relative
        if value.endswith("@" + absolute):
            return value[: -len(absolute)] + relative
        return value
    if isinstance(value, dict):
        return {key: _relativised(item, absolute, relative) for key, item in value.items()}
    return value
