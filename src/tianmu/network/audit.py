"""The scan audit trail: who sent probes where, when, and whether they said they were allowed to.

Every `tianmu discover`, `tianmu web` and `tianmu domain` run appends one row to `scan_audit` before
the first packet leaves (so an interrupted scan is still on record) and completes it at the end.
This is a table of its own until the identity capability's SM3 audit chain takes these records over:
`record_scan_start`/`record_scan_end` are the two calls to move onto it.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from tianmu.core.models import utcnow
from tianmu.store.database import Store
from tianmu.store.schema import scan_audit

__all__ = ["AuditRecord", "current_actor", "list_scans", "record_scan_end", "record_scan_start"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    tenant: str
    actor: str
    action: str
    started: datetime
    finished: datetime | None
    targets: list[str]
    ports: str | None
    authorized: bool
    engine: str | None
    summary: dict[str, Any]


def current_actor() -> str:
    """The person or service account on whose behalf the scan runs (`TIANMU_ACTOR`, else the OS user)."""
    actor = os.environ.get("TIANMU_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def record_scan_start(
    store: Store,
    *,
    tenant: str,
    action: str,
    targets: Sequence[str],
    ports: str | None,
    authorized: bool,
    engine: str | None = None,
    actor: str | None = None,
) -> int:
    """Append the record of a scan about to start; returns its id for `record_scan_end`."""
    with store.begin() as conn:
        result = conn.execute(
            insert(scan_audit).values(
                tenant=tenant,
                actor=actor or current_actor(),
                action=action,
                started=utcnow(),
                targets=list(targets),
                ports=ports,
                authorized=1 if authorized else 0,
                engine=engine,
                summary={},
            )
        )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def record_scan_end(store: Store, record_id: int, summary: dict[str, Any]) -> None:
    with store.begin() as conn:
        conn.execute(
            update(scan_audit).where(scan_audit.c.id == record_id).values(finished=utcnow(), summary=summary)
        )


def list_scans(store: Store, tenant: str, limit: int = 100) -> list[AuditRecord]:
    query = (
        select(scan_audit)
        .where(scan_audit.c.tenant == tenant)
        .order_by(scan_audit.c.started.desc(), scan_audit.c.id.desc())
        .limit(limit)
    )
    with store.connect() as conn:
        rows = conn.execute(query).all()
    return [
        AuditRecord(
            int(r.id),
            r.tenant,
            r.actor,
            r.action,
            r.started,
            r.finished,
            list(r.targets or []),
            r.ports,
            bool(r.authorized),
            r.engine,
            dict(r.summary or {}),
        )
        for r in rows
    ]
