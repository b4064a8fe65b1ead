"""/api/v1/overview: the numbers of the situation overview, exactly what the dashboard shows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from tianmu.identity.models import Permission, Principal
from tianmu.service.api.context import StoreDep
from tianmu.service.api.deps import require
from tianmu.service.api.resources import finding_public
from tianmu.store.queries import overview

__all__ = ["overview_numbers", "router"]

router = APIRouter(prefix="/overview", tags=["situation"])

Reader = Annotated[Principal, Depends(require(Permission.SITUATION_READ))]


def overview_numbers(store: StoreDep, tenant: str) -> dict[str, Any]:
    """The overview as JSON-ready data (the dashboard renders the same dict)."""
    data = overview(store, tenant)
    for key in ("kev", "newest_detections", "newest_intel"):
        data[key] = [finding_public(item).model_dump(mode="json") for item in data[key]]
    return data


@router.get("", summary="Situation overview numbers")
def get(store: StoreDep, principal: Reader) -> dict[str, Any]:
    return overview_numbers(store, principal.tenant)
