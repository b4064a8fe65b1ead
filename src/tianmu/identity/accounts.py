"""Accounts: tenants and their policies, users, their roles and passwords.

Every change is authorised here (`authorize`, and `role_may_grant` so nobody raises anyone above
themselves) and written to the audit chain in the same transaction as the change itself.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from tianmu.core.clock import Clock
from tianmu.identity import passwords
from tianmu.identity.audit import AuditLog
from tianmu.identity.errors import Conflict, IdentityError, PermissionDenied
from tianmu.identity.lockout import Lockout
from tianmu.identity.models import Permission, Policy, Principal, Role, Tenant, User
from tianmu.identity.permissions import authorize, role_may_grant
from tianmu.identity.records import tenant_from_row, tenant_row, user_by_id, user_from_row, user_row
from tianmu.identity.sessions import Sessions
from tianmu.store.database import Store
from tianmu.store.schema import identity_tenants, identity_users

__all__ = ["Accounts", "check_tenant_id", "check_username"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_SELF_SERVICE = {"user.password", "user.totp"}
"""Changes a user may make to their own account without managing users."""


def check_tenant_id(tenant_id: str) -> None:
    if not _TENANT.match(tenant_id):
        raise IdentityError(f"tenant id {tenant_id!r}: use lowercase letters, digits and '-' (max 64)")


def check_username(username: str) -> None:
    if not _NAME.match(username):
        raise IdentityError(f"user name {username!r}: letters, digits and . _ @ - only (max 128)")


class Accounts:
    def __init__(
        self, store: Store, clock: Clock, audit: AuditLog, *, lockout: Lockout, sessions: Sessions
    ) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit
        self._lockout = lockout
        self._sessions = sessions

    # --- tenants ---------------------------------------------------------------------------------------

    def create_tenant(
        self, tenant_id: str, name: str = "", *, actor: str = "cli", policy: Policy | None = None
    ) -> Tenant:
        check_tenant_id(tenant_id)
        policy = policy or Policy()
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(identity_tenants).values(
                        id=tenant_id,
                        name=name or tenant_id,
                        policy=policy.to_json(),
                        created_at=self.clock.now(),
                    )
                )
                self.audit.append(
                    conn, tenant=tenant_id, actor=actor, action="tenant.create", target=tenant_id
                )
        except DbIntegrityError as exc:
            raise Conflict(f"tenant {tenant_id!r} already exists") from exc
        return self.get_tenant(tenant_id)

    def get_tenant(self, tenant_id: str) -> Tenant:
        with self.store.connect() as conn:
            return tenant_from_row(tenant_row(conn, tenant_id))

    def list_tenants(self) -> list[Tenant]:
        with self.store.connect() as conn:
            return [
                tenant_from_row(r)
                for r in conn.execute(select(identity_tenants).order_by(identity_tenants.c.id))
            ]

    def set_policy(self, principal: Principal, tenant: str, policy: Policy) -> Tenant:
        authorize(principal, Permission.POLICY_MANAGE, tenant)
        with self.store.begin() as conn:
            tenant_row(conn, tenant)
            conn.execute(
                update(identity_tenants)
                .where(identity_tenants.c.id == tenant)
                .values(policy=policy.to_json())
            )
            self.audit.append(
                conn,
                tenant=tenant,
                actor=principal.username,
                action="policy.set",
                target=tenant,
                details=policy.to_json(),
            )
        return self.get_tenant(tenant)

    # --- users -----------------------------------------------------------------------------------------

    def create_user(
        self,
        principal: Principal,
        tenant: str,
        username: str,
        role: Role,
        *,
        password: str | None = None,
        display_name: str = "",
    ) -> User:
        authorize(principal, Permission.USERS_MANAGE, tenant)
        if not role_may_grant(principal.role, role):
            raise PermissionDenied(
                f"role {principal.role.value} may not create a user with role {role.value}"
            )
        check_username(username)
        policy = self.get_tenant(tenant).policy
        password_hash = None
        if password is not None:
            if problem := passwords.check_strength(password, policy.password_min_length):
                raise IdentityError(problem)
            password_hash = passwords.hash_password(password, policy.password_scheme)
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(identity_users).values(
                        id=str(uuid.uuid4()),
                        tenant=tenant,
                        username=username,
                        display_name=display_name,
                        role=role.value,
                        password_hash=password_hash,
                        totp_last_step=0,
                        failed_count=0,
                        disabled=False,
                        created_at=self.clock.now(),
                    )
                )
                self.audit.append(
                    conn,
                    tenant=tenant,
                    actor=principal.username,
                    action="user.create",
                    target=username,
                    details={"role": role.value},
                )
        except DbIntegrityError as exc:
            raise Conflict(f"user {username!r} already exists in tenant {tenant!r}") from exc
        return self.get_user(tenant, username)

    def get_user(self, tenant: str, username: str) -> User:
        with self.store.connect() as conn:
            return user_from_row(user_row(conn, tenant, username))

    def get_user_by_id(self, user_id: str) -> User:
        with self.store.connect() as conn:
            return user_from_row(user_by_id(conn, user_id))

    def list_users(self, principal: Principal, tenant: str) -> list[User]:
        authorize(principal, Permission.USERS_READ, tenant)
        with self.store.connect() as conn:
            rows = conn.execute(
                select(identity_users)
                .where(identity_users.c.tenant == tenant)
                .order_by(identity_users.c.username)
            )
            return [user_from_row(r) for r in rows]

    def change_user(
        self,
        principal: Principal,
        tenant: str,
        username: str,
        action: str,
        values: dict[str, Any],
        details: dict[str, Any] | None = None,
    ) -> User:
        """Write `values` to the user's row and audit it as `action`: a user manager's change, or one of
        the user's own (`user.password`, `user.totp`)."""
        with self.store.begin() as conn:
            row = user_row(conn, tenant, username)
            if row.id != principal.user_id or action not in _SELF_SERVICE:
                authorize(principal, Permission.USERS_MANAGE, tenant)
                if not role_may_grant(principal.role, Role(row.role)):
                    raise PermissionDenied(f"role {principal.role.value} may not change a {row.role}")
            conn.execute(update(identity_users).where(identity_users.c.id == row.id).values(**values))
            self.audit.append(
                conn,
                tenant=tenant,
                actor=principal.username,
                action=action,
                target=username,
                details=details or {},
            )
        return self.get_user(tenant, username)

    def set_role(self, principal: Principal, tenant: str, username: str, role: Role) -> User:
        if not role_may_grant(principal.role, role):
            raise PermissionDenied(f"role {principal.role.value} may not grant {role.value}")
        return self.change_user(
            principal, tenant, username, "user.role", {"role": role.value}, {"role": role.value}
        )

    def set_password(self, principal: Principal, tenant: str, username: str, password: str) -> User:
        policy = self.get_tenant(tenant).policy
        if problem := passwords.check_strength(password, policy.password_min_length):
            raise IdentityError(problem)
        hashed = passwords.hash_password(password, policy.password_scheme)
        user = self.change_user(
            principal,
            tenant,
            username,
            "user.password",
            {"password_hash": hashed},
            {"scheme": policy.password_scheme},
        )
        # A new password ends every other session of the user: whoever knew the old one is signed out.
        self._sessions.end_all(principal, tenant, user.id, username, "password changed")
        return user

    def change_own_password(
        self, principal: Principal, current: str, new: str, *, client: str = "local"
    ) -> None:
        """Self-service change; the current password is required (a stolen session alone is not enough)."""
        authorize(principal, Permission.SELF_MANAGE)
        with self.store.connect() as conn:
            row = user_by_id(conn, principal.user_id)
        if row.password_hash and not passwords.verify_password(row.password_hash, current):
            raise self._lockout.fail(
                principal.tenant,
                row,
                row.username,
                "password",
                "self-service",
                "wrong current password",
                "the current password is wrong",
            )
        self.set_password(principal, principal.tenant, principal.username, new)

    def set_disabled(self, principal: Principal, tenant: str, username: str, disabled: bool) -> User:
        action = "user.disable" if disabled else "user.enable"
        return self.change_user(principal, tenant, username, action, {"disabled": disabled})

    def unlock(self, principal: Principal, tenant: str, username: str) -> User:
        return self.change_user(
            principal, tenant, username, "user.unlock", {"failed_count": 0, "locked_until": None}
        )

    def delete_user(self, principal: Principal, tenant: str, username: str) -> None:
        authorize(principal, Permission.USERS_MANAGE, tenant)
        with self.store.begin() as conn:
            row = user_row(conn, tenant, username)
            if not role_may_grant(principal.role, Role(row.role)):
                raise PermissionDenied(f"role {principal.role.value} may not delete a {row.role}")
            conn.execute(delete(identity_users).where(identity_users.c.id == row.id))
            self.audit.append(
                conn, tenant=tenant, actor=principal.username, action="user.delete", target=username
            )
