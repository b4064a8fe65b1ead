"""Unscored advisories on the dashboard: the badge, the overview counts and the findings filter.

An advisory that publishes no severity gives its finding a *rank* (from KEV or EPSS, else medium by
default), not a rating (`tianmu.vulns.severity`, docs/risk.md). The dashboard must not show such a
finding as a plain `medium`: it carries an *unscored* badge wherever its severity is shown, the overview
says "3 medium (2 unscored)", and the findings list can show only the unscored ones.

The findings filter is the store's own `FindingQuery.unscored` condition (`store.queries`), so
pages, the API list and its export select the same findings in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select

from tianmu.core.models import FindingKind, TriageStatus
from tianmu.store.database import Store
from tianmu.store.queries import unscored_condition
from tianmu.store.schema import findings as findings_table

__all__ = ["is_unscored_item", "open_unscored_by_severity"]


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
    query = (
        select(findings_table.c.severity, func.count())
        .where(
            findings_table.c.tenant == tenant,
            findings_table.c.status == TriageStatus.OPEN.value,
            unscored_condition(store.dialect),
        )
        .group_by(findings_table.c.severity)
    )
    if asset_id is not None:
        query = query.where(findings_table.c.asset_id == asset_id)
    with store.connect() as conn:
        return {str(severity): int(count) for severity, count in conn.execute(query) if count}
