"""Rate limits per client and lockout per account: the tenant policy's brakes on guessing.

Every attempt, good or bad, counts towards the client's rate limit; failed factors count towards the
account's lockout. Both are measured against the service's clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from tianmu.core.clock import Clock
from tianmu.identity.audit import AuditLog
from tianmu.identity.errors import AccountLocked, AuthenticationError, RateLimited
from tianmu.identity.models import Policy
from tianmu.identity.records import tenant_from_row, tenant_row, utc, utc_opt
from tianmu.store.database import Store
from tianmu.store.schema import identity_attempts, identity_users

__all__ = ["Lockout"]

_ATTEMPTS_KEPT = dt.timedelta(days=1)


class Lockout:
    def __init__(self, store: Store, clock: Clock, audit: AuditLog) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit

    def check_rate(self, tenant: str, client: str, policy: Policy) -> None:
        """RateLimited when `client` used up the policy's attempts in its window."""
        if not policy.rate_limit_attempts:
            return
        now = self.clock.now()
        since = now - dt.timedelta(seconds=policy.rate_limit_window_seconds)
        with self.store.connect() as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(identity_attempts.c.at)).where(
                    identity_attempts.c.tenant == tenant,
                    identity_attempts.c.subject == f"ip:{client}",
                    identity_attempts.c.at >= since,
                )
            ).one()
        if count >= policy.rate_limit_attempts:
            retry = policy.rate_limit_window_seconds - int((now - utc(oldest)).total_seconds())
            raise RateLimited(max(retry, 1))

    def record_attempt(self, conn: Connection, tenant: str, client: str, success: bool) -> None:
        now = self.clock.now()
        conn.execute(
            insert(identity_attempts).values(tenant=tenant, subject=f"ip:{client}", at=now, success=success)
        )
        conn.execute(delete(identity_attempts).where(identity_attempts.c.at < now - _ATTEMPTS_KEPT))

    def refusal(self, row: Any) -> tuple[str, dt.datetime | None] | None:
        """Why the account may not sign in now ("locked" with its end, or "disabled"), or None."""
        locked = utc_opt(row.locked_until)
        if locked is not None and locked > self.clock.now():
            return "locked", locked
        if row.disabled:
            return "disabled", None
        return None

    def check_usable(self, row: Any, factor: str, client: str) -> None:
        """Refuse (and audit) a factor for a locked or disabled account before checking it.

        Used where the factor itself names the account (a passkey, a certificate, the second step of
        a sign-in), so saying "locked" reveals nothing. The refusal is recorded in its own transaction:
        it counts towards the client's rate limit even though the caller's work is abandoned.
        """
        found = self.refusal(row)
        if found is not None:
            raise self.refuse(row, factor, client, found, disclose=True, message="")

    def refuse(
        self,
        row: Any,
        factor: str,
        client: str,
        refusal: tuple[str, dt.datetime | None],
        *,
        disclose: bool,
        message: str,
    ) -> AuthenticationError:
        """Record a refused attempt on a locked or disabled account and return the error to raise.

        With `disclose=False` (the password step, where anyone may try any user name) the error says
        exactly what an unknown user or a wrong password is told: `message`.
        """
        reason, until = refusal
        with self.store.begin() as conn:
            self.record_attempt(conn, row.tenant, client, False)
            self.audit.append(
                conn,
                tenant=row.tenant,
                actor=row.username,
                action=f"login.{factor}",
                target=row.username,
                outcome="failure",
                details={"reason": reason, "client": client},
            )
        if until is not None:
            return AccountLocked(until, None if disclose else message)
        return AuthenticationError("this account is disabled" if disclose else message, reason="disabled")

    def clear(self, conn: Connection, user_id: str) -> None:
        """A completed sign-in starts the count of failures again."""
        conn.execute(
            update(identity_users)
            .where(identity_users.c.id == user_id)
            .values(failed_count=0, locked_until=None)
        )

    def fail(
        self,
        tenant: str,
        row: Any | None,
        username: str,
        factor: str,
        client: str,
        reason: str,
        message: str,
        *,
        disclose_lock: bool = True,
    ) -> AuthenticationError:
        """Record a failed factor (its own transaction, so it survives the refusal) and return the error:
        AccountLocked when this failure reached the policy's limit (saying so only with `disclose_lock`;
        otherwise its text is `message`, as for any other failure)."""
        with self.store.connect() as conn:
            policy = tenant_from_row(tenant_row(conn, tenant)).policy
        locked_until = None
        with self.store.begin() as conn:
            self.record_attempt(conn, tenant, client, False)
            if row is not None:
                failures = (
                    conn.execute(
                        select(identity_users.c.failed_count).where(identity_users.c.id == row.id)
                    ).scalar_one()
                    + 1
                )
                values: dict[str, Any] = {"failed_count": failures}
                if policy.max_failures and failures >= policy.max_failures:
                    locked_until = self.clock.now() + dt.timedelta(minutes=policy.lockout_minutes)
                    values = {"failed_count": 0, "locked_until": locked_until}
                conn.execute(update(identity_users).where(identity_users.c.id == row.id).values(**values))
            self.audit.append(
                conn,
                tenant=tenant,
                actor=username,
                action=f"login.{factor}",
                target=username,
                outcome="failure",
                details={"reason": reason, "client": client},
            )
            if locked_until is not None:
                self.audit.append(
                    conn,
                    tenant=tenant,
                    actor="system",
                    action="user.lock",
                    target=username,
                    details={"until": locked_until.isoformat()},
                )
        if locked_until is not None:
            return AccountLocked(locked_until, None if disclose_lock else message)
        return AuthenticationError(message, reason=reason)
