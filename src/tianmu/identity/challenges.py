"""One-time challenges: the state a multi-step flow keeps between requests (a WebAuthn challenge, the
nonce a certificate signs, the factors a sign-in has gathered so far, a TOTP seed awaiting confirmation).

Each is handed out as a random handle, stored hashed, expires after a few minutes by the service's clock
and is consumed at most once.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from tianmu.core.clock import Clock
from tianmu.identity.errors import AuthenticationError
from tianmu.identity.records import stored_id, utc
from tianmu.store.database import Store
from tianmu.store.schema import identity_challenges

__all__ = ["CHALLENGE_MINUTES", "Challenges"]

CHALLENGE_MINUTES = 5


class Challenges:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def new(
        self,
        tenant: str,
        kind: str,
        user_id: str | None,
        challenge: bytes,
        state: dict[str, Any],
        minutes: int = CHALLENGE_MINUTES,
    ) -> str:
        """Store a challenge and return its handle (also clearing out expired ones)."""
        handle = secrets.token_urlsafe(32)
        now = self.clock.now()
        with self.store.begin() as conn:
            conn.execute(delete(identity_challenges).where(identity_challenges.c.expires_at < now))
            conn.execute(
                insert(identity_challenges).values(
                    id=stored_id(handle),
                    tenant=tenant,
                    kind=kind,
                    user_id=user_id,
                    challenge=base64.urlsafe_b64encode(challenge).decode("ascii"),
                    state=state,
                    expires_at=now + dt.timedelta(minutes=minutes),
                )
            )
        return handle

    def find(self, conn: Connection, handle: str, kind: str, tenant: str | None) -> Any:
        """The live challenge row of `handle`, without consuming it."""
        row = conn.execute(
            select(identity_challenges).where(identity_challenges.c.id == stored_id(handle))
        ).first()
        if row is None or row.kind != kind or (tenant is not None and row.tenant != tenant):
            raise AuthenticationError(
                "this sign-in step expired or was already used; start again",
                reason=f"unknown {kind} challenge",
            )
        if utc(row.expires_at) <= self.clock.now():
            raise AuthenticationError(
                "this sign-in step expired; start again", reason=f"expired {kind} challenge"
            )
        return row

    def peek(self, handle: str, kind: str, tenant: str | None = None) -> Any:
        with self.store.connect() as conn:
            return self.find(conn, handle, kind, tenant)

    def take(self, handle: str, kind: str, tenant: str | None) -> tuple[bytes, dict[str, Any], str | None]:
        """Consume a challenge: the delete's row count makes it single-use even under concurrent requests."""
        with self.store.begin() as conn:
            row = self.find(conn, handle, kind, tenant)
            gone = conn.execute(
                delete(identity_challenges).where(identity_challenges.c.id == row.id)
            ).rowcount
            if gone != 1:
                raise AuthenticationError(
                    "this sign-in step was already used", reason=f"replayed {kind} challenge"
                )
        return base64.urlsafe_b64decode(row.challenge), dict(row.state), row.user_id
