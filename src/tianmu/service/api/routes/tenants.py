"""/api/v1/tenants: creating customers' tenants, for owners of the operator tenant only
(`tianmu.identity.provisioning`)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tianmu.identity.models import Tenant
from tianmu.identity.provisioning import list_tenants_as_operator, provision_tenant
from tianmu.service.api.deps import CsrfChecked, IdentityDep, PrincipalDep, ServiceSettingsDep

__all__ = ["router"]

router = APIRouter(prefix="/tenants", tags=["tenants"])


class TenantPublic(BaseModel):
    id: str
    name: str
    created_at: dt.datetime


class OwnerCreate(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str | None = Field(default=None, max_length=1024)
    """Left out for an owner who will sign in with a passkey or certificate only (enrolled by the CLI)."""
    display_name: str = Field(default="", max_length=256)


class TenantCreate(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=256)
    owner: OwnerCreate


class TenantCreated(TenantPublic):
    owner: str


def _public(tenant: Tenant) -> TenantPublic:
    return TenantPublic(id=tenant.id, name=tenant.name, created_at=tenant.created_at)


@router.get("", response_model=list[TenantPublic], summary="Every tenant of the installation")
def tenants_list(
    principal: PrincipalDep, identity: IdentityDep, settings: ServiceSettingsDep
) -> list[TenantPublic]:
    return [_public(t) for t in list_tenants_as_operator(identity, principal, settings.operator_tenant)]


@router.post(
    "",
    response_model=TenantCreated,
    status_code=201,
    summary="Create a tenant and its first owner",
    dependencies=[CsrfChecked],
)
def tenants_create(
    body: TenantCreate, principal: PrincipalDep, identity: IdentityDep, settings: ServiceSettingsDep
) -> TenantCreated:
    created = provision_tenant(
        identity,
        principal,
        settings.operator_tenant,
        body.id,
        name=body.name,
        owner=body.owner.username,
        password=body.owner.password,
        display_name=body.owner.display_name,
    )
    return TenantCreated(**_public(created.tenant).model_dump(), owner=created.owner.username)
