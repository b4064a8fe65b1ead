"""/api/v1/incidents and /api/v1/services: correlated incidents (with triage) and discovered services."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from tianmu.core.errors import InputError
from tianmu.core.models import Incident, TriageStatus
from tianmu.identity.models import Permission, Principal
from tianmu.service.api.audit import AuditDep
from tianmu.service.api.context import StoreDep
from tianmu.service.api.deps import CsrfChecked, require
from tianmu.situation.repository import find_incident, load_incidents, set_incident
from tianmu.situation.trace import trace
from tianmu.store.schema import services as services_table

__all__ = ["incidents_router", "services_router", "trace_router"]

incidents_router = APIRouter(prefix="/incidents", tags=["situation"])
services_router = APIRouter(prefix="/services", tags=["assets"])
trace_router = APIRouter(prefix="/trace", tags=["situation"])

Reader = Annotated[Principal, Depends(require(Permission.SITUATION_READ))]
Triager = Annotated[Principal, Depends(require(Permission.FINDINGS_TRIAGE))]


class IncidentUpdate(BaseModel):
    status: TriageStatus | None = None
    assignee: str | None = Field(default=None, max_length=200, description="Empty text unassigns.")


def _incident(incident: Incident) -> dict[str, Any]:
    data = asdict(incident)
    data["severity"] = incident.severity.value
    data["status"] = incident.status.value
    for key in ("first_seen", "last_seen"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


@incidents_router.get("", summary="Incidents, most recent activity first")
def list_incidents(
    store: StoreDep,
    principal: Reader,
    status: Annotated[list[TriageStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return [_incident(i) for i in load_incidents(store, principal.tenant, statuses=status, limit=limit)]


@incidents_router.get("/{key}", summary="One incident with its timeline")
def get_incident(key: str, store: StoreDep, principal: Reader) -> dict[str, Any]:
    try:
        return _incident(find_incident(store, principal.tenant, key))
    except InputError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


@incidents_router.patch("/{key}", summary="Set an incident's status or assignee", dependencies=[CsrfChecked])
def patch_incident(
    key: str, body: IncidentUpdate, store: StoreDep, principal: Triager, audit: AuditDep
) -> dict[str, Any]:
    try:
        incident = set_incident(store, principal.tenant, key, status=body.status, assignee=body.assignee)
    except InputError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    changes = {"status": body.status.value if body.status else None, "assignee": body.assignee}
    audit.record("incident.update", incident.id, **{k: v for k, v in changes.items() if v is not None})
    return _incident(incident)


@trace_router.get("/{value}", summary="Everything connected to an IP, user, hash or host, in time order")
def trace_entity(value: str, store: StoreDep, principal: Reader) -> dict[str, Any]:
    try:
        return trace(store, principal.tenant, value).as_dict()
    except InputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@services_router.get("", summary="Network services discovered on the tenant's hosts")
def list_services(
    store: StoreDep,
    principal: Reader,
    asset_id: int | None = None,
    state: Annotated[str | None, Query(pattern="^(open|closed)$")] = "open",
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[dict[str, Any]]:
    query = select(services_table).where(services_table.c.tenant == principal.tenant)
    if asset_id is not None:
        query = query.where(services_table.c.asset_id == asset_id)
    if state:
        query = query.where(services_table.c.state == state)
    query = query.order_by(services_table.c.address, services_table.c.port).limit(limit)
    with store.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": r.id,
            "asset_id": r.asset_id,
            "address": r.address,
            "port": r.port,
            "transport": r.transport,
            "state": r.state,
            "service": r.service,
            "product": r.product,
            "version": r.version,
            "cpe": r.cpe,
            "banner": r.banner,
            "tls": r.tls,
            "first_seen": r.first_seen.isoformat(),
            "last_seen": r.last_seen.isoformat(),
        }
        for r in rows
    ]
