"""Discovered hosts and services in the store, and what changed since the last scan.

A host is an Asset of kind `host` named after its host name (or its address). Each (address, port,
transport) is one `services` row. A re-scan updates the rows it saw open, reopens ports that had
closed, and marks `closed` the open rows whose port it covered and did not find open; ports it did not
cover keep their state. Open findings about a port that closed (`fingerprint_extra` `address:port/tcp`)
are resolved. The diff says which ports appeared (never seen open, or closed before) and which
disappeared, so that the engine can raise an exposure finding for each new open port.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from tianmu.core.models import Asset, Service
from tianmu.store.database import Store
from tianmu.store.repository import upsert_asset
from tianmu.store.schema import assets, findings, services

__all__ = ["HostDiff", "StoredService", "list_services", "save_host_services"]


@dataclass(slots=True)
class HostDiff:
    address: str
    first_scan: bool
    """No service of this address was ever stored: everything is new, nothing is an exposure change."""
    appeared: list[int] = field(default_factory=list)
    disappeared: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredService:
    asset: str
    service: Service
    state: str
    first_seen: datetime
    last_seen: datetime
    closed_at: datetime | None
    info: dict[str, Any]


def _existing(conn: Connection, tenant: str, address: str) -> dict[tuple[int, str], Any]:
    rows = conn.execute(
        select(services).where(and_(services.c.tenant == tenant, services.c.address == address))
    ).all()
    return {(int(r.port), r.transport): r for r in rows}


def save_host_services(
    store: Store,
    asset: Asset,
    address: str,
    found: Sequence[Service],
    scanned_ports: Iterable[int],
    now: datetime,
    infos: dict[int, dict[str, Any]] | None = None,
) -> HostDiff:
    """Fold one host's scan result into the store (one transaction) and say what changed."""
    covered = set(scanned_ports)
    with store.begin() as conn:
        existing = _existing(conn, asset.tenant, address)
        diff = HostDiff(address, first_scan=not existing)
        if not found and not existing:
            return diff  # an address with nothing open, never seen: not an asset (a /24 is 254 of them)
        asset_id = upsert_asset(conn, asset, now)
        open_now = {(s.port, s.transport) for s in found}
        for svc in found:
            values = {
                "asset_id": asset_id,
                "state": "open",
                "service": svc.service,
                "product": svc.product,
                "version": svc.version,
                "cpe": svc.cpe,
                "banner": svc.banner,
                "tls": svc.tls,
                "info": (infos or {}).get(svc.port, {}),
                "last_seen": now,
                "closed_at": None,
            }
            row = existing.get((svc.port, svc.transport))
            if row is None:
                conn.execute(
                    insert(services).values(
                        tenant=asset.tenant,
                        address=address,
                        port=svc.port,
                        transport=svc.transport,
                        first_seen=now,
                        **values,
                    )
                )
                diff.appeared.append(svc.port)
            else:
                if row.state != "open":
                    diff.appeared.append(svc.port)
                if svc.service is None:
                    # A ports-only scan (`--no-fingerprint`) says nothing new about what listens there.
                    for key in ("service", "product", "version", "cpe", "banner", "tls", "info"):
                        values.pop(key)
                conn.execute(update(services).where(services.c.id == row.id).values(**values))
        for (port, transport), row in existing.items():
            if row.state == "open" and (port, transport) not in open_now and port in covered:
                conn.execute(
                    update(services).where(services.c.id == row.id).values(state="closed", closed_at=now)
                )
                diff.disappeared.append(port)
        if diff.disappeared:
            _resolve_closed(conn, asset.tenant, asset_id, address, diff.disappeared)
    diff.appeared.sort()
    diff.disappeared.sort()
    return diff


def _resolve_closed(conn: Connection, tenant: str, asset_id: int, address: str, ports: Sequence[int]) -> None:
    """Open findings about a port that has closed are resolved (a later sighting reopens them)."""
    gone = {f"{address}:{port}/tcp" for port in ports}
    rows = conn.execute(
        select(findings.c.id, findings.c.evidence).where(
            and_(findings.c.tenant == tenant, findings.c.asset_id == asset_id, findings.c.status == "open")
        )
    ).all()
    ids = [r.id for r in rows if isinstance(r.evidence, dict) and r.evidence.get("fingerprint_extra") in gone]
    if ids:
        conn.execute(update(findings).where(findings.c.id.in_(ids)).values(status="resolved"))


def list_services(store: Store, tenant: str, *, state: str | None = "open") -> list[StoredService]:
    query = (
        select(services, assets.c.name.label("asset_name"))
        .join(assets, assets.c.id == services.c.asset_id)
        .where(services.c.tenant == tenant)
        .order_by(services.c.address, services.c.port)
    )
    if state is not None:
        query = query.where(services.c.state == state)
    with store.connect() as conn:
        rows = conn.execute(query).all()
    return [
        StoredService(
            r.asset_name,
            Service(
                r.address, int(r.port), r.transport, r.service, r.product, r.version, r.cpe, r.banner, r.tls
            ),
            r.state,
            r.first_seen,
            r.last_seen,
            r.closed_at,
            dict(r.info or {}),
        )
        for r in rows
    ]
