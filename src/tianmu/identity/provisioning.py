"""Tenants created through the service, for security offered as a service.

A provider runs one Tianmu for many customers. Tenants are the walls between them, and nobody inside a
customer's tenant may open a door into another: every permission is checked within the principal's own
tenant (`authorize`). So creating tenants through the API needs a tenant *above* the others, named by
the operator of the installation (`TIANMU_OPERATOR_TENANT`); its owners may create a tenant with its
first owner, and list tenants. They get no access to the new tenant's data: the new owner signs in
there and takes it from here. Without an operator tenant, only the command line (`tianmu tenant add`,
whoever holds the data directory) creates tenants.
"""

from __future__ import annotations

from dataclasses import dataclass

from tianmu.identity import passwords
from tianmu.identity.accounts import check_tenant_id, check_username
from tianmu.identity.errors import IdentityError, PermissionDenied
from tianmu.identity.models import Permission, Policy, Principal, Role, Tenant, User
from tianmu.identity.permissions import authorize
from tianmu.identity.service import IdentityService

__all__ = ["NewTenant", "list_tenants_as_operator", "provision_tenant"]


@dataclass(frozen=True, slots=True)
class NewTenant:
    tenant: Tenant
    owner: User


def _check_operator(principal: Principal, operator_tenant: str | None) -> None:
    if not operator_tenant:
        raise PermissionDenied("creating tenants through the service is off: no operator tenant is set")
    authorize(principal, Permission.TENANT_MANAGE, operator_tenant)


def provision_tenant(
    identity: IdentityService,
    principal: Principal,
    operator_tenant: str | None,
    tenant_id: str,
    *,
    name: str = "",
    owner: str,
    password: str | None = None,
    display_name: str = "",
) -> NewTenant:
    """Create a tenant and its first owner, as an owner of the operator tenant."""
    _check_operator(principal, operator_tenant)
    # Everything checked before anything is written: a tenant is never left without its owner.
    check_tenant_id(tenant_id)
    check_username(owner)
    policy = Policy()
    if password is not None and (problem := passwords.check_strength(password, policy.password_min_length)):
        raise IdentityError(problem)
    acting = f"{principal.username}@{principal.tenant}"
    tenant = identity.create_tenant(tenant_id, name, actor=acting, policy=policy)
    # The owner is made in the new tenant's name by the operator, who keeps no role there.
    founder = Principal(
        user_id=principal.user_id, tenant=tenant_id, username=acting, role=Role.OWNER, via="operator"
    )
    user = identity.create_user(
        founder, tenant_id, owner, Role.OWNER, password=password, display_name=display_name
    )
    return NewTenant(tenant, user)


def list_tenants_as_operator(
    identity: IdentityService, principal: Principal, operator_tenant: str | None
) -> list[Tenant]:
    _check_operator(principal, operator_tenant)
    return identity.list_tenants()
