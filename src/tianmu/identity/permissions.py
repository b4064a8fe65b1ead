"""Roles, permissions and the one place they are checked (`authorize`).

Every API route and dashboard page depends on `authorize` (through `tianmu.service.api.deps.require`), the
CLI's administrative commands call it with a local principal, and the identity service calls it before each
change. Nothing else decides who may do what.
"""

from __future__ import annotations

from tianmu.identity.errors import PermissionDenied
from tianmu.identity.models import Permission, Principal, Role

__all__ = ["ROLE_PERMISSIONS", "authorize", "can", "cli_principal", "role_may_grant"]

_READ = {Permission.SITUATION_READ, Permission.FINDINGS_READ, Permission.SELF_MANAGE}
_ANALYST = _READ | {Permission.FINDINGS_TRIAGE, Permission.ASSESS_RUN, Permission.ASSETS_WRITE}
_ADMIN = _ANALYST | {
    Permission.KB_MANAGE,
    Permission.USERS_READ,
    Permission.USERS_MANAGE,
    Permission.TOKENS_MANAGE,
    Permission.POLICY_MANAGE,
    Permission.AUDIT_READ,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_READ),
    Role.ANALYST: frozenset(_ANALYST),
    Role.ADMIN: frozenset(_ADMIN),
    Role.OWNER: frozenset(Permission),
}

_RANK = {Role.VIEWER: 0, Role.ANALYST: 1, Role.ADMIN: 2, Role.OWNER: 3}


def can(principal: Principal, permission: Permission, tenant: str | None = None) -> bool:
    if tenant is not None and tenant != principal.tenant:
        return False
    if permission not in ROLE_PERMISSIONS[principal.role]:
        return False
    return principal.scopes is None or permission.value in principal.scopes


def authorize(principal: Principal, permission: Permission, tenant: str | None = None) -> None:
    """Raise PermissionDenied unless `principal` holds `permission` in `tenant` (its own when None)."""
    if tenant is not None and tenant != principal.tenant:
        raise PermissionDenied(f"{principal.username} belongs to tenant {principal.tenant!r}, not {tenant!r}")
    if permission not in ROLE_PERMISSIONS[principal.role]:
        raise PermissionDenied(f"role {principal.role.value} may not {permission.value}")
    if principal.scopes is not None and permission.value not in principal.scopes:
        raise PermissionDenied(f"this token is not scoped for {permission.value}")


def role_may_grant(granter: Role, role: Role) -> bool:
    """An admin manages analysts and viewers (and other admins); only an owner makes owners."""
    return _RANK[granter] >= _RANK[role] and (granter == Role.OWNER or role != Role.OWNER)


def cli_principal(tenant: str, os_user: str | None = None) -> Principal:
    """A local administrator at the command line: whoever holds the data directory owns every tenant.

    Named ``cli:<os_user>`` in the audit chain when the OS user is known (the CLI's `CliSession`
    passes it), plain ``cli`` otherwise (set-up code and tests)."""
    name = "cli" if os_user is None else f"cli:{os_user}"
    return Principal(user_id="cli", tenant=tenant, username=name, role=Role.OWNER, via="cli")
