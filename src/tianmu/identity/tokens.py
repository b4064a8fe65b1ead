"""API tokens: bearer credentials a user makes for scripts, limited in scope and lifetime.

A token reads ``tmu_<id>_<secret>``; only the SM3 digest of the secret is stored. It is refused once
revoked, once its user is disabled, and from its expiry on (by the service's clock). Using it records
when it was last used, at most once a minute and best-effort (`tianmu.identity.bookkeeping`).
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import insert, or_, select, update

from tianmu.core.clock import Clock
from tianmu.gmcrypto.sm3 import digest
from tianmu.identity.audit import AuditLog
from tianmu.identity.bookkeeping import TOUCH_INTERVAL, best_effort, due
from tianmu.identity.errors import AuthenticationError, IdentityError, NotFound, PermissionDenied
from tianmu.identity.models import ApiToken, Permission, Principal, Role
from tianmu.identity.permissions import ROLE_PERMISSIONS, authorize
from tianmu.identity.records import tenant_from_row, tenant_row, user_by_id, utc, utc_opt
from tianmu.store.database import Store
from tianmu.store.schema import identity_tokens

__all__ = ["TOKEN_PREFIX", "Tokens"]

TOKEN_PREFIX = "tmu"


def _digest(secret: str) -> str:
    return digest(secret.encode("ascii")).hex()


class Tokens:
    def __init__(self, store: Store, clock: Clock, audit: AuditLog) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit

    def create(
        self, principal: Principal, name: str, scopes: list[str] | None = None, days: int | None = None
    ) -> tuple[str, ApiToken]:
        """A new token for `principal`'s own user; returns (the token text — shown once —, its record)."""
        if principal.via == "token":
            raise PermissionDenied("a token cannot create tokens")
        authorize(principal, Permission.TOKENS_MANAGE)
        allowed = {p.value for p in ROLE_PERMISSIONS[principal.role]}
        wanted = sorted(set(scopes)) if scopes else sorted(allowed)
        if unknown := [s for s in wanted if s not in allowed]:
            raise PermissionDenied(f"role {principal.role.value} cannot grant scopes: {', '.join(unknown)}")
        with self.store.connect() as conn:
            policy = tenant_from_row(tenant_row(conn, principal.tenant)).policy
        days = days or policy.token_max_days
        if days > policy.token_max_days:
            raise IdentityError(f"tokens may last at most {policy.token_max_days} days in this tenant")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = self.clock.now()
        expires = now + dt.timedelta(days=days)
        with self.store.begin() as conn:
            conn.execute(
                insert(identity_tokens).values(
                    id=token_id,
                    tenant=principal.tenant,
                    user_id=principal.user_id,
                    name=name,
                    digest=_digest(secret),
                    scopes=wanted,
                    created_at=now,
                    expires_at=expires,
                )
            )
            self.audit.append(
                conn,
                tenant=principal.tenant,
                actor=principal.username,
                action="token.create",
                target=token_id,
                details={"name": name, "scopes": wanted, "days": days},
            )
        record = ApiToken(token_id, principal.tenant, principal.user_id, name, tuple(wanted), now, expires)
        return f"{TOKEN_PREFIX}_{token_id}_{secret}", record

    def principal(self, token: str) -> Principal:
        """The principal a bearer token stands for; AuthenticationError when unknown, revoked or expired."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise AuthenticationError("invalid API token", reason="malformed token")
        token_id, secret = parts[1], parts[2]
        now = self.clock.now()
        # Only reads here: a request authenticated by token must not wait for, or fail on, a write.
        with self.store.connect() as conn:
            row = conn.execute(select(identity_tokens).where(identity_tokens.c.id == token_id)).first()
            ok = row is not None and secrets.compare_digest(row.digest, _digest(secret))
            if not ok or row is None:
                raise AuthenticationError("invalid API token", reason="unknown token")
            if row.revoked_at is not None:
                raise AuthenticationError("this API token was revoked", reason="revoked token")
            if utc(row.expires_at) <= now:
                raise AuthenticationError("this API token has expired", reason="expired token")
            user = user_by_id(conn, row.user_id)
            if user.disabled:
                raise AuthenticationError("the token's user is disabled", reason="disabled user")
        if due(utc_opt(row.last_used_at), now):
            stale = or_(
                identity_tokens.c.last_used_at.is_(None),
                identity_tokens.c.last_used_at <= now - TOUCH_INTERVAL,
            )
            touch = update(identity_tokens).where(identity_tokens.c.id == token_id, stale)
            best_effort(self.store, touch.values(last_used_at=now), f"use of token {token_id}")
        return Principal(
            user_id=user.id,
            tenant=user.tenant,
            username=user.username,
            role=Role(user.role),
            via="token",
            scopes=frozenset(row.scopes),
        )

    def owned_by(self, principal: Principal) -> list[ApiToken]:
        """The tokens of `principal`'s own user, oldest first."""
        with self.store.connect() as conn:
            rows = conn.execute(
                select(identity_tokens)
                .where(identity_tokens.c.user_id == principal.user_id)
                .order_by(identity_tokens.c.created_at)
            )
            return [
                ApiToken(
                    r.id,
                    r.tenant,
                    r.user_id,
                    r.name,
                    tuple(r.scopes),
                    utc(r.created_at),
                    utc(r.expires_at),
                    utc_opt(r.last_used_at),
                    utc_opt(r.revoked_at),
                )
                for r in rows
            ]

    def revoke(self, principal: Principal, token_id: str) -> None:
        """Revoke one's own token, or (for user managers) any token of the tenant."""
        with self.store.begin() as conn:
            row = conn.execute(select(identity_tokens).where(identity_tokens.c.id == token_id)).first()
            if row is None or row.tenant != principal.tenant:
                raise NotFound(f"no token {token_id}")
            if row.user_id != principal.user_id:
                authorize(principal, Permission.USERS_MANAGE, row.tenant)
            conn.execute(
                update(identity_tokens)
                .where(identity_tokens.c.id == token_id)
                .values(revoked_at=self.clock.now())
            )
            self.audit.append(
                conn, tenant=row.tenant, actor=principal.username, action="token.revoke", target=token_id
            )
