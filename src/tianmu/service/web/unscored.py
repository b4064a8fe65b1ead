"""Unscored advisories on the dashboard: the badge, the overview counts and the findings filter.

An advisory that publishes no severity gives its finding a *rank* (from KEV or EPSS, else medium by
default), not a rating (`tianmu.vulns.severity`, docs/risk.md). The dashboard must not show such a
finding as a plain `medium`: it carries an *unscored* badge wherever its severity is shown, the overview
says "3 medium (2 unscored)", and the findings list can show only the unscored ones.

The store's finding query has no unscored condition, so the filter pages through the ordinary query
and keeps the unscored findings; the cursor it hands on is the store's own, taken just after the last
finding shown, so no finding is skipped or shown twice between pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import func, or_, select

from tianmu.core.models import FindingKind, TriageStatus
from tianmu.situation.risk import is_unscored
from tianmu.store.database import Store
from tianmu.store.queries import FindingPage, FindingQuery, find_findings
from tianmu.store.schema import findings as findings_table

__all__ = ["SCAN_LIMIT", "is_unscored_item", "open_unscored_by_severity", "unscored_page"]

SCAN_LIMIT = 5000
"""Findings looked at for one page of unscored ones; past it the page ends early with a next link, so
a tenant with few unscored among many findings never makes one request read them all."""
_BATCH = 500


def is_unscored_item(item: object) -> bool:
    """`tianmu.situation.risk.is_unscored` for what templates hold: a `FindingPublic` or its JSON dict.

    The overview's lists are already JSON (the API's shape), so the check reads the serialised finding:
    a vulnerability without a score whose data says unscored (or, stored before that flag, an unknown
    severity source).
    """
    detail = item.get("detail") if isinstance(item, Mapping) else getattr(item, "detail", None)
    if not isinstance(detail, Mapping) or detail.get("kind") != FindingKind.VULNERABILITY.value:
        return False
    if detail.get("score") is not None:
        return False
    data = detail.get("data")
    if not isinstance(data, Mapping):
        return False
    return data.get("unscored") is True or data.get("severity_source") == "unknown"


def open_unscored_by_severity(store: Store, tenant: str, asset_id: int | None = None) -> dict[str, int]:
    """Open unscored vulnerability findings per severity they were ranked at (others left out), of the
    tenant or of one of its assets."""
    data = findings_table.c.data
    # The same JSON reads as the store's KEV filter: both databases answer without a schema change.
    if store.dialect == "postgresql":
        flag: Any = data["unscored"].as_boolean()
        source: Any = data["severity_source"].as_string()
    else:
        flag = func.json_extract(data, "$.unscored")
        source = func.json_extract(data, "$.severity_source")
    query = (
        select(findings_table.c.severity, func.count())
        .where(
            findings_table.c.tenant == tenant,
            findings_table.c.status == TriageStatus.OPEN.value,
            findings_table.c.kind == FindingKind.VULNERABILITY.value,
            findings_table.c.score.is_(None),
            or_(flag.is_(True), source == "unknown"),
        )
        .group_by(findings_table.c.severity)
    )
    if asset_id is not None:
        query = query.where(findings_table.c.asset_id == asset_id)
    with store.connect() as conn:
        return {str(severity): int(count) for severity, count in conn.execute(query) if count}


def unscored_page(
    store: Store,
    tenant: str,
    query: FindingQuery,
    *,
    limit: int = 50,
    cursor: str | None = None,
    scan_limit: int = SCAN_LIMIT,
) -> FindingPage:
    """One page of the unscored findings among those `query` selects (module docstring)."""
    if query.kinds and FindingKind.VULNERABILITY not in query.kinds:
        return FindingPage([], None)
    # Only vulnerabilities can be unscored: asking the store for them alone spares reading the rest.
    narrowed = replace(query, kinds=(FindingKind.VULNERABILITY,))
    batch = max(1, min(_BATCH, scan_limit))
    kept = []
    scanned = 0
    position = cursor
    while True:
        page = find_findings(store, tenant, narrowed, limit=batch, cursor=position)
        for index, item in enumerate(page.items):
            if not is_unscored(item.finding):
                continue
            kept.append(item)
            if len(kept) == limit:
                # The store's cursor after exactly this finding: the same query, cut right behind it.
                exact = find_findings(store, tenant, narrowed, limit=index + 1, cursor=position)
                return FindingPage(kept, exact.next_cursor)
        scanned += len(page.items)
        if page.next_cursor is None or scanned >= scan_limit:
            return FindingPage(kept, page.next_cursor)
        position = page.next_cursor
