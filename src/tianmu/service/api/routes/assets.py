"""/api/v1/assets and /api/v1/components: what the tenant owns and the software on it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import update

from tianmu.core.models import AssetKind
from tianmu.identity.models import Permission, Principal
from tianmu.service.api.audit import AuditDep
from tianmu.service.api.context import StoreDep
from tianmu.service.api.deps import CsrfChecked, require
from tianmu.service.api.resources import AssetPublic, AssetUpdate, asset_public
from tianmu.store.queries import get_asset, list_assets, list_components
from tianmu.store.repository import list_assessments
from tianmu.store.schema import assets as assets_table

__all__ = ["components_router", "router"]

router = APIRouter(prefix="/assets", tags=["assets"])
components_router = APIRouter(prefix="/components", tags=["assets"])

Reader = Annotated[Principal, Depends(require(Permission.SITUATION_READ))]
Writer = Annotated[Principal, Depends(require(Permission.ASSETS_WRITE))]


@router.get("", response_model=list[AssetPublic], summary="List assets")
def list_(
    store: StoreDep,
    principal: Reader,
    kind: AssetKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AssetPublic]:
    return [
        asset_public(s) for s in list_assets(store, principal.tenant, kind=kind, limit=limit, offset=offset)
    ]


@router.get("/{asset_id}", response_model=AssetPublic, summary="One asset")
def get(asset_id: int, store: StoreDep, principal: Reader) -> AssetPublic:
    summary = get_asset(store, principal.tenant, asset_id)
    if summary is None:
        raise HTTPException(status_code=404, detail=f"no asset {asset_id}")
    return asset_public(summary)


@router.patch(
    "/{asset_id}",
    response_model=AssetPublic,
    summary="Set an asset's criticality or tags",
    dependencies=[CsrfChecked],
)
def patch(
    asset_id: int, body: AssetUpdate, store: StoreDep, principal: Writer, audit: AuditDep
) -> AssetPublic:
    if get_asset(store, principal.tenant, asset_id) is None:
        raise HTTPException(status_code=404, detail=f"no asset {asset_id}")
    values: dict[str, Any] = {}
    if body.criticality is not None:
        values["criticality"] = body.criticality
    if body.tags is not None:
        values["tags"] = sorted(set(body.tags))
    if values:
        with store.begin() as conn:
            conn.execute(
                update(assets_table)
                .where(assets_table.c.tenant == principal.tenant, assets_table.c.id == asset_id)
                .values(**values)
            )
        audit.record("asset.update", str(asset_id), **values)
    summary = get_asset(store, principal.tenant, asset_id)
    assert summary is not None
    return asset_public(summary)


@router.get("/{asset_id}/components", summary="The software found on one asset")
def asset_components(
    asset_id: int,
    store: StoreDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    if get_asset(store, principal.tenant, asset_id) is None:
        raise HTTPException(status_code=404, detail=f"no asset {asset_id}")
    return list_components(store, principal.tenant, asset_id=asset_id, limit=limit, offset=offset)


@router.get("/{asset_id}/assessments", summary="One asset's stored assessments, newest first")
def asset_assessments(
    asset_id: int,
    store: StoreDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[dict[str, Any]]:
    if get_asset(store, principal.tenant, asset_id) is None:
        raise HTTPException(status_code=404, detail=f"no asset {asset_id}")
    return [
        {
            "id": a.id,
            "asset_id": a.asset_id,
            "target": a.target,
            "started": a.started.isoformat(),
            "finished": a.finished.isoformat() if a.finished else None,
            "tianmu_version": a.tianmu_version,
            "components": a.components,
            "open_by_severity": a.open_by_severity,
            "errors": a.errors,
            # What the run left out (pseudo file systems, a refused .tianmuignore, limits hit).
            "notes": a.notes,
        }
        for a in list_assessments(store, principal.tenant, asset_id=asset_id, limit=limit)
    ]


@components_router.get("", summary="Search the tenant's software inventory")
def components(
    store: StoreDep,
    principal: Reader,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    return list_components(store, principal.tenant, name=name, limit=limit, offset=offset)
