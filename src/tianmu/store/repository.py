"""Saving and reading the organisation's data: assets, their components, assessments and findings.

Every text is stored `storable` (`tianmu.core.serialize`: a NUL or a file name's undecodable bytes
escaped) and every JSON value `jsonable`: one hostile log line or file name must not fail the one
transaction that stores every engine's findings.

The fingerprint rule lives here in practice: a finding whose fingerprint is already stored for the tenant
is the same problem found again, so only `last_seen`, the texts that advisories may have improved
(severity, score, summary, data) and the assessment link move; `first_seen` and the triage status stay.
A resolved finding that is found again is reopened, because the problem came back.

A finding whose fingerprint is new may still be a problem the store knows under the fingerprint scheme
from before findings were keyed on their files (`tianmu.store.legacy`): that row is given the new
fingerprint and treated as found again, so its triage and first_seen stay and no old row stays open
beside the new one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from tianmu import __version__
from tianmu.core.models import (
    Assessment,
    Asset,
    AssetKind,
    Component,
    Finding,
    FindingKind,
    Location,
    Severity,
    TriageStatus,
    utcnow,
)
from tianmu.core.serialize import jsonable, storable
from tianmu.store.database import Store
from tianmu.store.legacy import adopt, predecessors, rekey_references
from tianmu.store.schema import assessments, assets, components, findings

__all__ = [
    "MAX_NOTES",
    "MAX_NOTE_CHARS",
    "SaveHook",
    "SaveResult",
    "StoredAssessment",
    "StoredFinding",
    "bounded_notes",
    "count_assessments",
    "finding_from_row",
    "list_assessments",
    "list_findings",
    "save_assessment",
    "set_status",
    "upsert_asset",
]

_CHUNK = 500

MAX_NOTES = 200
"""Notes kept per stored assessment, the last one saying how many more there were."""
MAX_NOTE_CHARS = 2000


def bounded_notes(notes: Iterable[str]) -> list[str]:
    """The notes as stored: at most MAX_NOTES texts of at most MAX_NOTE_CHARS characters each.

    A walk of a hostile tree can note without end (every vanished file, every refused ignore file);
    the row must stay small, and saying how many were left out keeps the stored view honest.
    """
    kept: list[str] = []
    extra = 0
    for note in notes:
        if len(kept) < MAX_NOTES:
            text = storable(str(note))
            kept.append(text if len(text) <= MAX_NOTE_CHARS else text[: MAX_NOTE_CHARS - 1] + "…")
        else:
            extra += 1
    if extra:
        # The last kept note gives its place to the count, so the list is still at most MAX_NOTES long.
        extra += 1
        kept[-1] = f"{extra} more notes"
    return kept


@dataclass(frozen=True, slots=True)
class SaveResult:
    assessment_id: int
    asset_id: int
    new_findings: int
    seen_again: int
    reopened: int
    components: int = 0
    findings: int = 0


@dataclass(frozen=True, slots=True)
class StoredFinding:
    id: int
    finding: Finding


def upsert_asset(conn: Connection, asset: Asset, now: datetime) -> int:
    row = conn.execute(
        select(assets.c.id).where(
            and_(
                assets.c.tenant == asset.tenant,
                assets.c.kind == asset.kind.value,
                assets.c.name == storable(asset.name),
            )
        )
    ).first()
    label = storable(asset.label) if asset.label else None
    if row is not None:
        # The label follows what the user gave this time (a remote added since), the identity stays.
        values = {"last_seen": now, **({"label": label} if label else {})}
        conn.execute(update(assets).where(assets.c.id == row.id).values(**values))
        return int(row.id)
    result = conn.execute(
        insert(assets).values(
            tenant=asset.tenant,
            kind=asset.kind.value,
            name=storable(asset.name),
            label=label,
            criticality=asset.criticality,
            tags=jsonable(list(asset.tags)),
            first_seen=now,
            last_seen=now,
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def _component_json(component: Component | None) -> dict[str, Any] | None:
    if component is None:
        return None
    values = {
        "name": component.name,
        "version": component.version,
        "ecosystem": component.ecosystem,
        "purl": component.purl,
        "path": component.location.path if component.location else None,
        "line": component.location.line if component.location else None,
        "source_name": component.source_name,
        "distro_release": component.distro_release,
        "direct": component.direct,
        "distro_package": component.distro_package,
    }
    return dict(jsonable(values))


def _component_from_json(data: dict[str, Any] | None) -> Component | None:
    if not data:
        return None
    location = Location(data["path"], data.get("line")) if data.get("path") else None
    return Component(
        name=data["name"],
        version=data["version"],
        ecosystem=data["ecosystem"],
        purl=data["purl"],
        location=location,
        source_name=data.get("source_name"),
        distro_release=data.get("distro_release"),
        direct=data.get("direct"),
        distro_package=data.get("distro_package"),
    )


SaveHook = Callable[[Connection, "SaveResult"], None]


def save_assessment(store: Store, assessment: Assessment, *, also: SaveHook | None = None) -> SaveResult:
    """Store one assessment in a single transaction and fold its findings into the tenant's findings.

    On return, the Finding objects carry the stored first_seen, last_seen and triage status, so what the
    user is shown is what the database holds. `also(conn, result)` runs inside the same transaction
    before it commits: a job marks itself done there, so an assessment is stored once per job even
    when a worker dies between the two (an exception from `also` rolls the whole save back).

    Two workers saving assessments of the same asset at once can both try to insert the same asset or
    finding row (or lock rows in opposite orders): the loser's transaction is rolled back and run
    again, and then finds the winner's rows and updates them.
    """
    for attempt in range(_SAVE_ATTEMPTS):
        try:
            return _save_once(store, assessment, also)
        except (IntegrityError, OperationalError) as exc:
            retryable = isinstance(exc, IntegrityError) or "deadlock" in str(exc).lower()
            if not retryable or attempt == _SAVE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


_SAVE_ATTEMPTS = 4


def _save_once(store: Store, assessment: Assessment, also: SaveHook | None) -> SaveResult:
    now = assessment.finished or utcnow()
    tenant = assessment.asset.tenant
    with store.begin() as conn:
        asset_id = upsert_asset(conn, assessment.asset, now)
        # Components are a snapshot of the asset as it is now: the previous inventory is replaced.
        conn.execute(delete(components).where(components.c.asset_id == asset_id))
        rows = [
            {
                "tenant": tenant,
                "asset_id": asset_id,
                "purl": storable(c.purl),
                "name": storable(c.name),
                "version": storable(c.version),
                "ecosystem": storable(c.ecosystem),
                "path": storable(c.location.path) if c.location else None,
                "line": c.location.line if c.location else None,
                "source_name": storable(c.source_name) if c.source_name else c.source_name,
                "seen_at": now,
            }
            for c in assessment.components
        ]
        for start in range(0, len(rows), _CHUNK):
            conn.execute(insert(components), rows[start : start + _CHUNK])

        result = conn.execute(
            insert(assessments).values(
                tenant=tenant,
                asset_id=asset_id,
                target=storable(assessment.target),
                started=assessment.started,
                finished=now,
                tianmu_version=__version__,
                component_count=len(assessment.components),
                finding_counts={},
                errors=jsonable(list(assessment.errors)),
                notes=bounded_notes(assessment.notes),
            )
        )
        assert result.inserted_primary_key is not None
        assessment_id = int(result.inserted_primary_key[0])
        new, again, reopened = _merge_findings(
            conn, tenant, asset_id, assessment_id, assessment.findings, now
        )
        # The posture row should count what is open after triage was carried over, not before.
        open_counts = Counter(f.severity.value for f in assessment.findings if f.status is TriageStatus.OPEN)
        conn.execute(
            update(assessments)
            .where(assessments.c.id == assessment_id)
            .values(finding_counts=dict(open_counts))
        )
        saved = SaveResult(
            assessment_id,
            asset_id,
            new,
            again,
            reopened,
            len(assessment.components),
            len(assessment.findings),
        )
        if also is not None:
            also(conn, saved)
    return saved


def _merge_findings(
    conn: Connection,
    tenant: str,
    asset_id: int,
    assessment_id: int,
    found: Sequence[Finding],
    now: datetime,
) -> tuple[int, int, int]:
    by_fingerprint: dict[str, Finding] = {}
    for finding in found:
        by_fingerprint.setdefault(finding.fingerprint, finding)
    existing: dict[str, Any] = {}
    keys = list(by_fingerprint)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        query = select(findings.c.id, findings.c.fingerprint, findings.c.status, findings.c.first_seen).where(
            and_(findings.c.tenant == tenant, findings.c.fingerprint.in_(chunk))
        )
        for row in conn.execute(query):
            existing[row.fingerprint] = row
    unseen = {fp: f for fp, f in by_fingerprint.items() if fp not in existing}
    earlier = predecessors(conn, tenant, unseen, taken=by_fingerprint.keys()) if unseen else {}

    new_rows: list[dict[str, Any]] = []
    renamed: dict[str, str] = {}
    new = again = reopened = 0
    for fingerprint, finding in by_fingerprint.items():
        values = {
            "kind": finding.kind.value,
            "rule_id": storable(finding.rule_id),
            "title": storable(finding.title),
            "severity": finding.severity.value,
            "severity_rank": finding.severity.rank,
            "score": finding.score,
            "summary": storable(finding.summary),
            "component": _component_json(finding.component),
            # Plain JSON types whatever an engine put there (bytes, NaN, a datetime): one odd value
            # must not fail the transaction that stores every engine's findings.
            "evidence": jsonable(finding.evidence),
            "aliases": jsonable(list(finding.aliases)),
            "references": jsonable(list(finding.references)),
            "techniques": jsonable(list(finding.techniques)),
            "data": jsonable(finding.data),
            "last_seen": now,
            "last_assessment_id": assessment_id,
        }
        stored = existing.get(fingerprint)
        if stored is None and fingerprint in earlier:
            # Known under its old fingerprint: re-keyed in place, then updated as any finding found again.
            stored = adopt(conn, fingerprint, earlier[fingerprint])
            renamed.update((row.fingerprint, fingerprint) for row in earlier[fingerprint])
        if stored is None:
            new += 1
            finding.first_seen = finding.last_seen = now
            new_rows.append(
                {
                    **values,
                    "tenant": tenant,
                    "fingerprint": fingerprint,
                    "asset_id": asset_id,
                    "status": finding.status.value,
                    "first_seen": now,
                }
            )
            continue
        again += 1
        status = TriageStatus(stored.status)
        if status is TriageStatus.RESOLVED:
            status = TriageStatus.OPEN
            reopened += 1
        values["status"] = status.value
        conn.execute(update(findings).where(findings.c.id == stored.id).values(**values))
        finding.status = status
        finding.first_seen = stored.first_seen
        finding.last_seen = now
    for start in range(0, len(new_rows), _CHUNK):
        conn.execute(insert(findings), new_rows[start : start + _CHUNK])
    rekey_references(conn, tenant, renamed)
    return new, again, reopened


def set_status(store: Store, tenant: str, fingerprint: str, status: TriageStatus) -> bool:
    """Triage one finding; False when the tenant has no finding with that fingerprint."""
    with store.begin() as conn:
        result = conn.execute(
            update(findings)
            .where(and_(findings.c.tenant == tenant, findings.c.fingerprint == fingerprint))
            .values(status=status.value)
        )
    return bool(result.rowcount)


def list_findings(
    store: Store,
    tenant: str,
    *,
    kinds: Iterable[FindingKind] | None = None,
    min_severity: Severity | None = None,
    statuses: Iterable[TriageStatus] | None = None,
    limit: int | None = None,
) -> list[StoredFinding]:
    query = (
        select(
            findings,
            assets.c.name.label("asset_name"),
            assets.c.kind.label("asset_kind"),
            assets.c.label.label("asset_label"),
        )
        .join(assets, assets.c.id == findings.c.asset_id)
        .where(findings.c.tenant == tenant)
    )
    if kinds is not None:
        query = query.where(findings.c.kind.in_([k.value for k in kinds]))
    if statuses is not None:
        query = query.where(findings.c.status.in_([s.value for s in statuses]))
    if min_severity is not None:
        allowed = [s.value for s in Severity if s.at_least(min_severity)]
        query = query.where(findings.c.severity.in_(allowed))
    query = query.order_by(findings.c.last_seen.desc(), findings.c.id)
    if limit is not None:
        query = query.limit(limit)
    out: list[StoredFinding] = []
    with store.connect() as conn:
        for row in conn.execute(query):
            finding = finding_from_row(row)
            out.append(StoredFinding(int(row.id), finding))
    return out


def finding_from_row(row: Any) -> Finding:
    """A stored finding as the model, from a `findings` row joined with its asset's `asset_name` and
    `asset_kind` (every reader of stored findings builds them here, so they read the same everywhere)."""
    return Finding(
        kind=FindingKind(row.kind),
        rule_id=row.rule_id,
        title=row.title,
        severity=Severity(row.severity),
        # A reader that joins no label (an older query) gets the asset called by its path.
        asset=Asset(
            name=row.asset_name,
            kind=AssetKind(row.asset_kind),
            tenant=row.tenant,
            label=getattr(row, "asset_label", None) or "",
        ),
        score=row.score,
        summary=row.summary,
        component=_component_from_json(row.component),
        evidence=row.evidence or {},
        aliases=tuple(row.aliases or ()),
        references=tuple(row.references or ()),
        techniques=tuple(row.techniques or ()),
        data=row.data or {},
        status=TriageStatus(row.status),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
    )


def count_assessments(store: Store, tenant: str) -> int:
    with store.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(assessments).where(assessments.c.tenant == tenant)
            ).scalar_one()
        )


@dataclass(frozen=True, slots=True)
class StoredAssessment:
    id: int
    asset_id: int
    target: str
    started: datetime
    finished: datetime | None
    tianmu_version: str
    components: int
    open_by_severity: dict[str, int]
    errors: list[str]
    notes: list[str]


def list_assessments(
    store: Store, tenant: str, *, asset_id: int | None = None, limit: int = 20
) -> list[StoredAssessment]:
    """The tenant's stored assessments, newest first, with their errors and notes as saved."""
    query = select(assessments).where(assessments.c.tenant == tenant)
    if asset_id is not None:
        query = query.where(assessments.c.asset_id == asset_id)
    query = query.order_by(assessments.c.started.desc(), assessments.c.id.desc()).limit(limit)
    with store.connect() as conn:
        rows = conn.execute(query).all()
    return [
        StoredAssessment(
            id=int(r.id),
            asset_id=int(r.asset_id),
            target=r.target,
            started=r.started,
            finished=r.finished,
            tianmu_version=r.tianmu_version,
            components=int(r.component_count),
            open_by_severity=dict(r.finding_counts or {}),
            errors=list(r.errors or []),
            notes=list(r.notes or []),
        )
        for r in rows
    ]
