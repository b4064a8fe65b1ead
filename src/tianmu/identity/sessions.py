"""Sessions: what a completed sign-in leaves behind, behind the cookie.

The secret is given once and stored hashed. A session ends when it is signed out, when it reaches the
policy's absolute lifetime, when it has been idle too long (both by the service's clock), or when its
user's password changes. Its last activity is written at most once a minute and best-effort
(`tianmu.identity.bookkeeping`), so idle time is kept to the minute.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tianmu.core.clock import Clock
from tianmu.identity.audit import AuditLog
from tianmu.identity.bookkeeping import TOUCH_INTERVAL, best_effort, due
from tianmu.identity.errors import AuthenticationError
from tianmu.identity.models import Policy, Principal, Role
from tianmu.identity.records import stored_id, tenant_from_row, tenant_row, user_by_id, utc
from tianmu.store.database import Store
from tianmu.store.schema import identity_sessions

__all__ = ["Sessions"]


class Sessions:
    def __init__(self, store: Store, clock: Clock, audit: AuditLog) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit

    def create(
        self, conn: Connection, row: Any, factors: tuple[str, ...], client: str, policy: Policy
    ) -> str:
        """Start a session for the user of `row` inside the sign-in's transaction; returns its secret."""
        secret = secrets.token_urlsafe(32)
        now = self.clock.now()
        conn.execute(
            insert(identity_sessions).values(
                id=stored_id(secret),
                tenant=row.tenant,
                user_id=row.id,
                factors=list(factors),
                created_at=now,
                expires_at=now + dt.timedelta(minutes=policy.session_minutes),
                last_seen_at=now,
                client=client[:256],
            )
        )
        self.audit.append(
            conn,
            tenant=row.tenant,
            actor=row.username,
            action="session.create",
            target=row.username,
            details={"factors": list(factors), "client": client},
        )
        return secret

    def principal(self, secret: str) -> Principal:
        """The signed-in principal of a session cookie; AuthenticationError when absent, ended or idle."""
        now = self.clock.now()
        # Only reads here: a signed-in page must not wait for, or fail on, a write (bookkeeping below).
        with self.store.connect() as conn:
            row = conn.execute(
                select(identity_sessions).where(identity_sessions.c.id == stored_id(secret))
            ).first()
            if row is None or row.revoked_at is not None:
                raise AuthenticationError("please sign in", reason="no session")
            policy = tenant_from_row(tenant_row(conn, row.tenant)).policy
            user = user_by_id(conn, row.user_id)
        this = identity_sessions.c.id == row.id
        idle_end = utc(row.last_seen_at) + dt.timedelta(minutes=policy.idle_minutes)
        if utc(row.expires_at) <= now or idle_end <= now:
            # Refused whether or not the end is written: a later request writes it if this one cannot.
            ended = update(identity_sessions).where(this, identity_sessions.c.revoked_at.is_(None))
            best_effort(self.store, ended.values(revoked_at=now), "end of an expired session")
            raise AuthenticationError(
                "your session has ended; please sign in again", reason="session expired"
            )
        if user.disabled:
            raise AuthenticationError("this account is disabled", reason="disabled")
        if due(utc(row.last_seen_at), now):
            # Idle time is kept to the minute; a touch the database would not have costs at most that.
            stale = identity_sessions.c.last_seen_at <= now - TOUCH_INTERVAL
            seen = update(identity_sessions).where(this, stale).values(last_seen_at=now)
            best_effort(self.store, seen, "activity of a session")
        return Principal(
            user_id=user.id,
            tenant=user.tenant,
            username=user.username,
            role=Role(user.role),
            via="session",
            factors=tuple(row.factors),
            session_id=row.id,
        )

    def end(self, secret: str) -> None:
        """Sign out (ending an unknown or already ended session is not an error)."""
        with self.store.begin() as conn:
            row = conn.execute(
                select(identity_sessions).where(identity_sessions.c.id == stored_id(secret))
            ).first()
            if row is None or row.revoked_at is not None:
                return
            conn.execute(
                update(identity_sessions)
                .where(identity_sessions.c.id == row.id)
                .values(revoked_at=self.clock.now())
            )
            user = user_by_id(conn, row.user_id)
            self.audit.append(
                conn, tenant=row.tenant, actor=user.username, action="session.end", target=user.username
            )

    def end_all(self, principal: Principal, tenant: str, user_id: str, username: str, reason: str) -> int:
        """End every open session of a user but the one `principal` is using; returns how many ended."""
        with self.store.begin() as conn:
            query = update(identity_sessions).where(
                identity_sessions.c.user_id == user_id, identity_sessions.c.revoked_at.is_(None)
            )
            if principal.session_id is not None:
                query = query.where(identity_sessions.c.id != principal.session_id)
            ended = int(conn.execute(query.values(revoked_at=self.clock.now())).rowcount)
            if ended:
                self.audit.append(
                    conn,
                    tenant=tenant,
                    actor=principal.username,
                    action="session.end-all",
                    target=username,
                    details={"sessions": ended, "reason": reason},
                )
        return ended
