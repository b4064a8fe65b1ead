"""Storing the situation: incidents (with status and assignee), posture history, alert delivery state.

Incidents are upserted by their key (`INC-…`), so re-correlating the same findings changes nothing and
a user's status and assignee survive new findings (a resolved incident with new findings reopens: the
correlator decides that). Incidents folded into another are deleted; their findings live on in the one
that absorbed them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tianmu.core.errors import InputError
from tianmu.core.models import Asset, AssetKind, Finding, Incident, Severity, TriageStatus, utcnow
from tianmu.store.database import Store
from tianmu.store.repository import list_findings
from tianmu.store.schema import assets, situation_alert_state, situation_incidents, situation_posture

from .correlation import DEFAULT_WINDOW, Correlator, IncidentChange
from .risk import RiskReport
from .tactics import TechniqueResolver
from .timeline import finding_time

__all__ = [
    "PosturePoint",
    "find_incident",
    "load_assets",
    "load_incidents",
    "open_findings",
    "posture_history",
    "rebuild_incidents",
    "record_posture",
    "save_incidents",
    "set_incident",
    "update_incidents",
]


def _upsert(
    conn: Connection, table: Table, key: dict[str, Any], values: dict[str, Any], constraint: str
) -> None:
    """INSERT … ON CONFLICT DO UPDATE: two workers saving the same incident never collide on the key."""
    if conn.dialect.name == "postgresql":
        statement = pg_insert(table).values(**key, **values)
        conn.execute(statement.on_conflict_do_update(constraint=constraint, set_=values))
        return
    lite = sqlite_insert(table).values(**key, **values)
    conn.execute(lite.on_conflict_do_update(index_elements=list(key), set_=values))


def _row_values(incident: Incident, now: datetime) -> dict[str, Any]:
    return {
        "title": incident.title,
        "severity": incident.severity.value,
        "stage": incident.stage,
        "status": incident.status.value,
        "assignee": incident.assignee,
        "tactics": list(incident.tactics),
        "assets": list(incident.assets),
        "sources": list(incident.sources),
        "entities": dict(incident.entities),
        "finding_fingerprints": list(incident.finding_fingerprints),
        "timeline": list(incident.timeline),
        "first_seen": incident.first_seen,
        "last_seen": incident.last_seen,
        "updated": now,
    }


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything Tianmu stores is UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _from_row(row: Any) -> Incident:
    return Incident(
        title=row.title,
        tenant=row.tenant,
        severity=Severity(row.severity),
        stage=row.stage,
        status=TriageStatus(row.status),
        finding_fingerprints=list(row.finding_fingerprints or []),
        assets=list(row.assets or []),
        sources=list(row.sources or []),
        timeline=list(row.timeline or []),
        first_seen=_aware(row.first_seen),
        last_seen=_aware(row.last_seen),
        id=row.key,
        assignee=row.assignee,
        tactics=list(row.tactics or []),
        entities=dict(row.entities or {}),
    )


def save_incidents(store: Store, incidents: Iterable[Incident], removed: Iterable[str] = ()) -> None:
    """Upsert incidents by (tenant, key); delete the keys in `removed` (merged away)."""
    now = utcnow()
    items = list(incidents)
    with store.begin() as conn:
        for incident in items:
            values = _row_values(incident, now)
            _upsert(
                conn,
                situation_incidents,
                {"tenant": incident.tenant, "key": incident.id},
                values,
                "uq_situation_incidents_tenant_key",
            )
        gone = list(removed)
        if gone and items:
            conn.execute(
                delete(situation_incidents).where(
                    and_(situation_incidents.c.tenant == items[0].tenant, situation_incidents.c.key.in_(gone))
                )
            )


def load_incidents(
    store: Store,
    tenant: str,
    *,
    since: datetime | None = None,
    statuses: Iterable[TriageStatus] | None = None,
    limit: int | None = None,
) -> list[Incident]:
    """The tenant's incidents, most recent activity first."""
    query = select(situation_incidents).where(situation_incidents.c.tenant == tenant)
    if since is not None:
        query = query.where(
            or_(situation_incidents.c.last_seen >= since, situation_incidents.c.last_seen.is_(None))
        )
    if statuses is not None:
        query = query.where(situation_incidents.c.status.in_([s.value for s in statuses]))
    query = query.order_by(situation_incidents.c.last_seen.desc(), situation_incidents.c.key)
    if limit is not None:
        query = query.limit(limit)
    with store.connect() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def find_incident(store: Store, tenant: str, key: str) -> Incident:
    """By key, or a unique prefix of it (case-insensitive); InputError when none or several match."""
    rest = key.strip().lower().removeprefix("inc-")
    if not rest or any(c not in "0123456789abcdef" for c in rest):
        raise InputError(f"not an incident id: {key!r} (expected INC- and hex digits, e.g. INC-3f2a9c01d4e5)")
    with store.connect() as conn:
        rows = list(
            conn.execute(
                select(situation_incidents)
                .where(
                    and_(
                        situation_incidents.c.tenant == tenant, situation_incidents.c.key.like(f"INC-{rest}%")
                    )
                )
                .limit(2)
            )
        )
    if not rows:
        raise InputError(f"no incident {key!r} in tenant {tenant!r} (see `tianmu incidents list`)")
    if len(rows) > 1:
        raise InputError(f"{key!r} matches several incidents; give more characters")
    return _from_row(rows[0])


def set_incident(
    store: Store, tenant: str, key: str, *, status: TriageStatus | None = None, assignee: str | None = None
) -> Incident:
    """Set status and/or assignee (empty assignee text unassigns); returns the updated incident."""
    incident = find_incident(store, tenant, key)
    values: dict[str, Any] = {"updated": utcnow()}
    if status is not None:
        values["status"] = status.value
        incident.status = status
    if assignee is not None:
        values["assignee"] = assignee or None
        incident.assignee = assignee or None
    with store.begin() as conn:
        conn.execute(
            update(situation_incidents)
            .where(and_(situation_incidents.c.tenant == tenant, situation_incidents.c.key == incident.id))
            .values(**values)
        )
    return incident


def update_incidents(
    store: Store,
    tenant: str,
    findings: Sequence[Finding],
    *,
    window: timedelta = DEFAULT_WINDOW,
    resolver: TechniqueResolver | None = None,
) -> list[IncidentChange]:
    """Fold new findings into the stored incidents (streaming correlation against the store).

    Only incidents that could still absorb these findings are loaded: those active within `window` of
    the earliest new finding.
    """
    times = [t for t in (finding_time(f) for f in findings) if t is not None]
    since = min(times) - window if times else None
    correlator = Correlator(
        tenant=tenant, window=window, resolver=resolver, incidents=load_incidents(store, tenant, since=since)
    )
    changes = correlator.add_all(findings)
    if changes:
        latest: dict[str, Incident] = {c.incident.id: c.incident for c in changes}
        removed = {key for c in changes for key in c.merged} - set(latest)
        save_incidents(store, latest.values(), removed)
    return changes


def rebuild_incidents(
    store: Store,
    tenant: str,
    findings: Sequence[Finding],
    *,
    window: timedelta = DEFAULT_WINDOW,
    resolver: TechniqueResolver | None = None,
) -> list[Incident]:
    """Correlate from scratch (after the ATT&CK base or the window changed), keeping the status and
    assignee of every incident whose id survives; incidents that no longer form are removed."""
    before = {i.id: i for i in load_incidents(store, tenant)}
    correlator = Correlator(tenant=tenant, window=window, resolver=resolver)
    correlator.add_all(findings)
    incidents = correlator.incidents
    for incident in incidents:
        old = before.get(incident.id)
        if old is not None:
            incident.status, incident.assignee = old.status, old.assignee
    save_incidents(store, incidents, set(before) - {i.id for i in incidents})
    return incidents


def load_assets(store: Store, tenant: str) -> list[Asset]:
    """The tenant's asset records with criticality and tags (what the risk model weighs)."""
    with store.connect() as conn:
        rows = conn.execute(select(assets).where(assets.c.tenant == tenant).order_by(assets.c.id))
        return [
            Asset(
                name=row.name,
                kind=AssetKind(row.kind),
                tenant=row.tenant,
                criticality=int(row.criticality),
                tags=tuple(row.tags or ()),
            )
            for row in rows
        ]


def open_findings(store: Store, tenant: str) -> list[Finding]:
    """Open and acknowledged findings: what the tenant's risk is made of."""
    rows = list_findings(store, tenant, statuses=(TriageStatus.OPEN, TriageStatus.ACKNOWLEDGED))
    return [row.finding for row in rows]


@dataclass(frozen=True, slots=True)
class PosturePoint:
    taken_at: datetime
    score: float
    level: str
    open_findings: int
    open_incidents: int
    assessment_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "score": round(self.score, 1),
            "level": self.level,
            "open_findings": self.open_findings,
            "open_incidents": self.open_incidents,
            "assessment_id": self.assessment_id,
        }


def record_posture(
    store: Store, report: RiskReport, *, assessment_id: int | None = None, open_incidents: int = 0
) -> None:
    with store.begin() as conn:
        conn.execute(
            insert(situation_posture).values(
                tenant=report.tenant,
                assessment_id=assessment_id,
                taken_at=report.computed_at,
                score=report.score,
                level=report.level,
                open_findings=len(report.findings),
                open_incidents=open_incidents,
                drivers=dict(report.drivers),
                assets=[
                    {"name": a.name, "kind": a.kind, "score": round(a.score, 1), "level": a.level}
                    for a in report.assets
                ],
            )
        )


def posture_history(store: Store, tenant: str, *, limit: int = 50) -> list[PosturePoint]:
    """The last `limit` posture points, oldest first (the order a trend is drawn in)."""
    query = (
        select(situation_posture)
        .where(situation_posture.c.tenant == tenant)
        .order_by(situation_posture.c.taken_at.desc(), situation_posture.c.id.desc())
        .limit(limit)
    )
    with store.connect() as conn:
        rows = list(conn.execute(query))
    return [
        PosturePoint(
            _aware(r.taken_at) or utcnow(),
            r.score,
            r.level,
            r.open_findings,
            r.open_incidents,
            r.assessment_id,
        )
        for r in reversed(rows)
    ]


def alert_state(store: Store, tenant: str, rule: str, subject: str) -> str | None:
    with store.connect() as conn:
        row = conn.execute(
            select(situation_alert_state.c.state).where(
                and_(
                    situation_alert_state.c.tenant == tenant,
                    situation_alert_state.c.rule == rule,
                    situation_alert_state.c.subject == subject,
                )
            )
        ).first()
    return None if row is None else str(row.state)


def set_alert_state(
    store: Store,
    tenant: str,
    rule: str,
    subject: str,
    state: str,
    channels: list[str],
    *,
    at: datetime | None = None,
) -> None:
    """Record `state` as delivered for (rule, subject) at `at` (default: now)."""
    now = at or utcnow()
    with store.begin() as conn:
        values = {"state": state, "delivered_at": now, "channels": channels}
        _upsert(
            conn,
            situation_alert_state,
            {"tenant": tenant, "rule": rule, "subject": subject},
            values,
            "uq_situation_alert_state_tenant_rule_subject",
        )
