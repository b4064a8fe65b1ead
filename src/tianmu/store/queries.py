"""The read side for the API and the dashboard: filtered, sorted, cursor-paged findings; overview numbers;
assets with their components and open findings; bulk triage.

Every function takes the tenant and filters on it in SQL: no caller can read across tenants by
forgetting a filter, because there is no query here without one. Pages use keyset cursors (the sort
key and the id of the last row), so page 500 costs what page 1 costs; the indexes that serve them are
declared in `schema.py` (revision 0002) and checked with EXPLAIN in the PostgreSQL tests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, case, func, or_, select, tuple_, update

from tianmu.core.errors import InputError
from tianmu.core.models import (
    Asset,
    AssetKind,
    Finding,
    FindingKind,
    Severity,
    TriageStatus,
)
from tianmu.store.database import Store
from tianmu.store.repository import finding_from_row
from tianmu.store.schema import assets, components, findings

__all__ = [
    "AssetSummary",
    "FindingPage",
    "FindingQuery",
    "FindingSort",
    "PagedFinding",
    "bulk_set_status",
    "find_findings",
    "get_asset",
    "get_finding",
    "list_assets",
    "list_components",
    "overview",
    "unscored_condition",
]


class FindingSort(StrEnum):
    LAST_SEEN = "last_seen"
    """Newest first (the default)."""
    SEVERITY = "severity"
    """Most severe first, newest first within a severity."""
    FIRST_SEEN = "first_seen"


@dataclass(frozen=True, slots=True)
class FindingQuery:
    kinds: tuple[FindingKind, ...] = ()
    severities: tuple[Severity, ...] = ()
    min_severity: Severity | None = None
    statuses: tuple[TriageStatus, ...] = ()
    asset_id: int | None = None
    since: datetime | None = None
    """Only findings last seen at or after this time."""
    until: datetime | None = None
    """Only findings last seen before this time."""
    text: str | None = None
    """Case-insensitive substring of the rule id or the title."""
    kev: bool | None = None
    unscored: bool | None = None
    """Only (True) or never (False) vulnerabilities whose advisories publish no severity."""
    sort: FindingSort = FindingSort.LAST_SEEN


@dataclass(frozen=True, slots=True)
class PagedFinding:
    id: int
    asset_id: int
    finding: Finding


@dataclass(frozen=True, slots=True)
class FindingPage:
    items: list[PagedFinding]
    next_cursor: str | None
    """Pass back as `cursor` for the next page; None on the last page."""


def _encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: FindingSort) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if sort is FindingSort.SEVERITY:
            rank, seen, ident = values
            return [int(rank), datetime.fromisoformat(seen), int(ident)]
        seen, ident = values
        return [datetime.fromisoformat(seen), int(ident)]
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"invalid cursor {cursor!r}: pass back the next_cursor of the previous page"
        ) from exc


def _filters(tenant: str, q: FindingQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [findings.c.tenant == tenant]
    if q.kinds:
        where.append(findings.c.kind.in_([k.value for k in q.kinds]))
    if q.severities:
        where.append(findings.c.severity_rank.in_([s.rank for s in q.severities]))
    if q.min_severity is not None:
        where.append(findings.c.severity_rank >= q.min_severity.rank)
    if q.statuses:
        where.append(findings.c.status.in_([s.value for s in q.statuses]))
    if q.asset_id is not None:
        where.append(findings.c.asset_id == q.asset_id)
    if q.since is not None:
        where.append(findings.c.last_seen >= q.since)
    if q.until is not None:
        where.append(findings.c.last_seen < q.until)
    if q.text:
        pattern = f"%{q.text.lower()}%"
        where.append(
            or_(func.lower(findings.c.rule_id).like(pattern), func.lower(findings.c.title).like(pattern))
        )
    return where


def _kev_filter(query: Select[Any], kev: bool | None, dialect: str) -> Select[Any]:
    if kev is None:
        return query
    # `data.kev` is a JSON boolean; both databases can read it without a schema change.
    flag = (
        findings.c.data["kev"].as_boolean()
        if dialect == "postgresql"
        else func.json_extract(findings.c.data, "$.kev")
    )
    return query.where(flag.is_(True) if kev else or_(flag.is_(None), flag.is_(False)))


def unscored_condition(dialect: str) -> ColumnElement[bool]:
    """SQL true exactly for the findings `tianmu.situation.risk.is_unscored` calls unscored: a
    vulnerability without a score whose data says `unscored: true` (or, stored before that flag,
    `severity_source: "unknown"`). Never NULL, so its negation selects every other finding."""
    data = findings.c.data
    # The JSON type, not a truthy value: `"unscored": "yes"` or `1` is not the flag the engine writes.
    if dialect == "postgresql":
        # A missing key reads as NULL, and NULL would make the negation drop the finding too.
        flag = and_(
            func.coalesce(func.json_typeof(data["unscored"]), "") == "boolean",
            func.coalesce(data["unscored"].as_string(), "") == "true",
        )
        source: Any = data["severity_source"].as_string()
    else:
        flag = func.coalesce(func.json_type(data, "$.unscored"), "") == "true"
        source = func.json_extract(data, "$.severity_source")
    return and_(
        findings.c.kind == FindingKind.VULNERABILITY.value,
        findings.c.score.is_(None),
        or_(flag, func.coalesce(source, "") == "unknown"),
    )


def find_findings(
    store: Store,
    tenant: str,
    query: FindingQuery | None = None,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> FindingPage:
    """One page of the tenant's findings matching `query`."""
    q = query or FindingQuery()
    if not 1 <= limit <= 1000:
        raise InputError(f"limit must be between 1 and 1000, not {limit}")
    seen = findings.c.first_seen if q.sort is FindingSort.FIRST_SEEN else findings.c.last_seen
    keys: list[Any] = [seen, findings.c.id]
    if q.sort is FindingSort.SEVERITY:
        keys = [findings.c.severity_rank, *keys]
    statement = (
        select(
            findings,
            assets.c.name.label("asset_name"),
            assets.c.kind.label("asset_kind"),
            assets.c.label.label("asset_label"),
        )
        .join(assets, assets.c.id == findings.c.asset_id)
        .where(and_(*_filters(tenant, q)))
    )
    statement = _kev_filter(statement, q.kev, store.dialect)
    if q.unscored is not None:
        unscored = unscored_condition(store.dialect)
        statement = statement.where(unscored if q.unscored else ~unscored)
    if cursor:
        statement = statement.where(tuple_(*keys) < tuple_(*_decode_cursor(cursor, q.sort)))
    statement = statement.order_by(*[k.desc() for k in keys]).limit(limit + 1)
    with store.connect() as conn:
        rows = conn.execute(statement).all()
    items = [PagedFinding(int(r.id), int(r.asset_id), finding_from_row(r)) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        when = last.first_seen if q.sort is FindingSort.FIRST_SEEN else last.last_seen
        values: list[Any] = [when, int(last.id)]
        if q.sort is FindingSort.SEVERITY:
            values = [int(last.severity_rank), *values]
        next_cursor = _encode_cursor(values)
    return FindingPage(items, next_cursor)


def get_finding(store: Store, tenant: str, finding_id: int) -> PagedFinding | None:
    """One finding of the tenant by id, or None (also when the id belongs to another tenant)."""
    statement = (
        select(
            findings,
            assets.c.name.label("asset_name"),
            assets.c.kind.label("asset_kind"),
            assets.c.label.label("asset_label"),
        )
        .join(assets, assets.c.id == findings.c.asset_id)
        .where(findings.c.tenant == tenant, findings.c.id == finding_id)
    )
    with store.connect() as conn:
        row = conn.execute(statement).first()
    return PagedFinding(int(row.id), int(row.asset_id), finding_from_row(row)) if row else None


def bulk_set_status(store: Store, tenant: str, ids: Iterable[int], status: TriageStatus) -> int:
    """Triage many findings at once; ids of other tenants are ignored. Returns how many changed."""
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    with store.begin() as conn:
        result = conn.execute(
            update(findings)
            .where(findings.c.tenant == tenant, findings.c.id.in_(wanted))
            .values(status=status.value)
        )
    return int(result.rowcount)


def overview(store: Store, tenant: str, *, newest: int = 10, top_assets: int = 10) -> dict[str, Any]:
    """The numbers of the situation overview: open findings by severity and kind, KEV exposures,
    newest detections and intel hits, and the assets with the most severe open findings."""
    open_ = and_(findings.c.tenant == tenant, findings.c.status == TriageStatus.OPEN.value)
    kev_query = FindingQuery(statuses=(TriageStatus.OPEN,), kev=True)
    with store.connect() as conn:
        # One pass over the open findings for the three counts (by severity, by kind, KEV-listed): at
        # 100,000 findings each pass costs tens of milliseconds on PostgreSQL.
        kev_flag = _kev_filter(select(findings.c.id), True, store.dialect).whereclause
        by_severity = {s.value: 0 for s in Severity}
        unscored = {s.value: 0 for s in Severity}
        by_kind = {k.value: 0 for k in FindingKind}
        kev_open = 0
        counts = select(
            findings.c.severity_rank,
            findings.c.kind,
            func.count(),
            func.sum(case((kev_flag, 1), else_=0)),  # type: ignore[arg-type]
            func.sum(case((unscored_condition(store.dialect), 1), else_=0)),
        ).where(open_)
        for rank, kind, count, kev_count, unscored_count in conn.execute(
            counts.group_by(findings.c.severity_rank, findings.c.kind)
        ):
            by_severity[_RANK_TO_SEVERITY[int(rank)].value] += int(count)
            unscored[_RANK_TO_SEVERITY[int(rank)].value] += int(unscored_count or 0)
            by_kind[str(kind)] = by_kind.get(str(kind), 0) + int(count)
            kev_open += int(kev_count or 0)
        weight = func.sum(
            func.power(10, findings.c.severity_rank)  # one critical outweighs any number of lows
        ).label("weight")
        risky = conn.execute(
            select(
                assets.c.id,
                assets.c.name,
                assets.c.label,
                assets.c.kind,
                assets.c.criticality,
                weight,
                func.count().label("n"),
            )
            .join(findings, findings.c.asset_id == assets.c.id)
            .where(open_)
            .group_by(assets.c.id, assets.c.name, assets.c.label, assets.c.kind, assets.c.criticality)
            .order_by(weight.desc(), assets.c.id)
            .limit(top_assets)
        ).all()
        asset_count = conn.execute(
            select(func.count()).select_from(assets).where(assets.c.tenant == tenant)
        ).scalar()
    kev = find_findings(store, tenant, kev_query, limit=newest)
    detections = find_findings(
        store,
        tenant,
        FindingQuery(kinds=(FindingKind.DETECTION,), statuses=(TriageStatus.OPEN,)),
        limit=newest,
    )
    intel = find_findings(
        store, tenant, FindingQuery(kinds=(FindingKind.INTEL,), statuses=(TriageStatus.OPEN,)), limit=newest
    )
    return {
        "assets": int(asset_count or 0),
        "open_findings": sum(by_severity.values()),
        "by_severity": by_severity,
        # Of each severity's open findings, those ranked there with no published severity.
        "unscored": unscored,
        "by_kind": by_kind,
        "kev_open": kev_open,
        "kev": kev.items,
        "newest_detections": detections.items,
        "newest_intel": intel.items,
        "top_assets": [
            {
                "id": int(r.id),
                "name": r.name,
                "label": r.label or r.name,
                "kind": r.kind,
                "criticality": int(r.criticality),
                "open_findings": int(r.n),
                "weight": int(r.weight or 0),
            }
            for r in risky
        ],
    }


_RANK_TO_SEVERITY = {s.rank: s for s in Severity}


@dataclass(frozen=True, slots=True)
class AssetSummary:
    id: int
    asset: Asset
    first_seen: datetime
    last_seen: datetime
    components: int = 0
    open_by_severity: dict[str, int] = field(default_factory=dict)


def list_assets(
    store: Store, tenant: str, *, kind: AssetKind | None = None, limit: int = 100, offset: int = 0
) -> list[AssetSummary]:
    """The tenant's assets, most recently seen first, with component and open-finding counts."""
    query = select(assets).where(assets.c.tenant == tenant)
    if kind is not None:
        query = query.where(assets.c.kind == kind.value)
    query = query.order_by(assets.c.last_seen.desc(), assets.c.id).limit(limit).offset(offset)
    with store.connect() as conn:
        return _summaries(conn, tenant, conn.execute(query).all())


def get_asset(store: Store, tenant: str, asset_id: int) -> AssetSummary | None:
    """One asset of the tenant, or None (also when the id belongs to another tenant)."""
    with store.connect() as conn:
        rows = conn.execute(select(assets).where(assets.c.tenant == tenant, assets.c.id == asset_id)).all()
        summaries = _summaries(conn, tenant, rows)
    return summaries[0] if summaries else None


def _summaries(conn: Connection, tenant: str, rows: Sequence[Any]) -> list[AssetSummary]:
    ids = [int(r.id) for r in rows]
    comp_counts: dict[int, int] = {
        int(asset_id): int(count)
        for asset_id, count in conn.execute(
            select(components.c.asset_id, func.count())
            .where(components.c.tenant == tenant, components.c.asset_id.in_(ids))
            .group_by(components.c.asset_id)
        )
    }
    open_counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    for asset_id, severity, count in conn.execute(
        select(findings.c.asset_id, findings.c.severity, func.count())
        .where(
            findings.c.tenant == tenant,
            findings.c.status == TriageStatus.OPEN.value,
            findings.c.asset_id.in_(ids),
        )
        .group_by(findings.c.asset_id, findings.c.severity)
    ):
        open_counts[int(asset_id)][str(severity)] = int(count)
    return [
        AssetSummary(
            id=int(r.id),
            asset=Asset(
                name=r.name,
                kind=AssetKind(r.kind),
                tenant=r.tenant,
                criticality=int(r.criticality),
                tags=tuple(r.tags or ()),
                label=r.label or "",
            ),
            first_seen=r.first_seen,
            last_seen=r.last_seen,
            components=comp_counts.get(int(r.id), 0),
            open_by_severity=open_counts[int(r.id)],
        )
        for r in rows
    ]


def list_components(
    store: Store,
    tenant: str,
    *,
    asset_id: int | None = None,
    name: str | None = None,
    limit: int = 500,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Components of the tenant's assets (the current inventory snapshot), by ecosystem and name."""
    query = select(components).where(components.c.tenant == tenant)
    if asset_id is not None:
        query = query.where(components.c.asset_id == asset_id)
    if name:
        query = query.where(func.lower(components.c.name).like(f"%{name.lower()}%"))
    query = query.order_by(components.c.ecosystem, components.c.name, components.c.version, components.c.id)
    with store.connect() as conn:
        rows = conn.execute(query.limit(limit).offset(offset)).all()
    return [
        {
            "id": int(r.id),
            "asset_id": int(r.asset_id),
            "purl": r.purl,
            "name": r.name,
            "version": r.version,
            "ecosystem": r.ecosystem,
            "location": {"path": r.path, "line": r.line} if r.path else None,
            "source_name": r.source_name,
            "seen_at": r.seen_at.isoformat(),
        }
        for r in rows
    ]
