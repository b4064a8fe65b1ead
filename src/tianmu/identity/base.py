"""The base of IdentityService: construction, sealing, row mapping, look-ups and one-time challenges."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from tianmu import gmcrypto
from tianmu.gmcrypto import sm2
from tianmu.gmcrypto.sm3 import digest
from tianmu.gmcrypto.x509 import Certificate, load_certificates
from tianmu.identity.audit import AuditLog
from tianmu.identity.errors import AuthenticationError, NotFound
from tianmu.identity.keys import platform_key
from tianmu.identity.models import Policy, Principal, Role, Tenant, User
from tianmu.store.database import Store
from tianmu.store.schema import identity_challenges, identity_revoked_certs, identity_tenants, identity_users

__all__ = ["IdentityBase", "RelyingParty", "cli_principal", "utc", "utc_opt"]

_CHALLENGE_MINUTES = 5


def _hid(handle: str) -> str:
    """Handles are stored hashed: reading the database does not let anyone continue someone's sign-in."""
    return digest(handle.encode("utf-8")).hex()


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Where the sign-in pages are served: WebAuthn binds passkeys to `id`, assertions to `origin`."""

    id: str = "localhost"
    name: str = "Tianmu"
    origin: str = "http://localhost:8000"


def cli_principal(tenant: str) -> Principal:
    """A local administrator at the command line: whoever holds the data directory owns every tenant."""
    return Principal(user_id="cli", tenant=tenant, username="cli", role=Role.OWNER, via="cli")


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything in Tianmu is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def utc_opt(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else utc(value)


class IdentityBase:
    def __init__(
        self,
        store: Store,
        *,
        home: Path,
        kek: bytes | None = None,
        rp: RelyingParty | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        checkpoint_every: int = 100,
    ) -> None:
        self.store = store
        self.home = home
        self.kek = kek if kek is not None else gmcrypto.master_key(home)
        self.rp = rp or RelyingParty()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._platform_key: sm2.Sm2PrivateKey | None = None
        self.audit = AuditLog(store, self.platform_key, checkpoint_every=checkpoint_every, clock=self.clock)

    # --- keys and sealing ------------------------------------------------------------------------------

    def platform_key(self) -> sm2.Sm2PrivateKey:
        if self._platform_key is None:
            self._platform_key = platform_key(self.home, self.kek)
        return self._platform_key

    def seal(self, purpose: str, plaintext: bytes, aad: str) -> str:
        key = gmcrypto.derive_key(self.kek, purpose)
        return base64.b64encode(gmcrypto.seal(key, plaintext, aad=aad.encode("utf-8"))).decode("ascii")

    def unseal(self, purpose: str, sealed: str, aad: str) -> bytes:
        key = gmcrypto.derive_key(self.kek, purpose)
        return gmcrypto.open(key, base64.b64decode(sealed), aad=aad.encode("utf-8"))

    # --- row mapping -----------------------------------------------------------------------------------

    @staticmethod
    def _tenant(row: Any) -> Tenant:
        return Tenant(
            id=row.id,
            name=row.name,
            policy=Policy.from_json(row.policy or {}),
            created_at=utc(row.created_at),
            has_ca_key=bool(row.ca_key_sealed),
            ca_certs_pem=row.ca_certs or "",
        )

    @staticmethod
    def _user(row: Any) -> User:
        return User(
            id=row.id,
            tenant=row.tenant,
            username=row.username,
            display_name=row.display_name,
            role=Role(row.role),
            created_at=utc(row.created_at),
            has_password=bool(row.password_hash),
            has_totp=bool(row.totp_sealed),
            disabled=bool(row.disabled),
            locked_until=utc_opt(row.locked_until),
            failed_count=row.failed_count,
        )

    def _tenant_row(self, conn: Connection, tenant: str) -> Any:
        row = conn.execute(select(identity_tenants).where(identity_tenants.c.id == tenant)).first()
        if row is None:
            raise NotFound(f"no tenant {tenant!r}")
        return row

    def _user_row(self, conn: Connection, tenant: str, username: str) -> Any:
        row = conn.execute(
            select(identity_users).where(
                identity_users.c.tenant == tenant, identity_users.c.username == username
            )
        ).first()
        if row is None:
            raise NotFound(f"no user {username!r} in tenant {tenant!r}")
        return row

    def _user_by_id(self, conn: Connection, user_id: str) -> Any:
        row = conn.execute(select(identity_users).where(identity_users.c.id == user_id)).first()
        if row is None:
            raise NotFound(f"no user with id {user_id}")
        return row

    def get_tenant(self, tenant_id: str) -> Tenant:
        with self.store.connect() as conn:
            return self._tenant(self._tenant_row(conn, tenant_id))

    def trusted_cas(self, tenant: str) -> list[Certificate]:
        pem = self.get_tenant(tenant).ca_certs_pem
        return load_certificates(pem.encode("ascii"), source=f"tenant {tenant} CA bundle") if pem else []

    def revoked_serials(self, conn: Connection, tenant: str) -> set[str]:
        rows = conn.execute(
            select(identity_revoked_certs.c.serial).where(identity_revoked_certs.c.tenant == tenant)
        )
        return {r.serial for r in rows}

    def _totp_seed(self, row: Any) -> str | None:
        if not row.totp_sealed:
            return None
        return self.unseal("totp", row.totp_sealed, f"totp:{row.id}").decode("ascii")

    # --- one-time challenges ---------------------------------------------------------------------------

    def _new_challenge(
        self,
        tenant: str,
        kind: str,
        user_id: str | None,
        challenge: bytes,
        state: dict[str, Any],
        minutes: int = _CHALLENGE_MINUTES,
    ) -> str:
        handle = secrets.token_urlsafe(32)
        now = self.clock()
        with self.store.begin() as conn:
            conn.execute(delete(identity_challenges).where(identity_challenges.c.expires_at < now))
            conn.execute(
                insert(identity_challenges).values(
                    id=_hid(handle),
                    tenant=tenant,
                    kind=kind,
                    user_id=user_id,
                    challenge=base64.urlsafe_b64encode(challenge).decode("ascii"),
                    state=state,
                    expires_at=now + dt.timedelta(minutes=minutes),
                )
            )
        return handle

    def _find_challenge(self, conn: Connection, handle: str, kind: str, tenant: str | None) -> Any:
        row = conn.execute(
            select(identity_challenges).where(identity_challenges.c.id == _hid(handle))
        ).first()
        if row is None or row.kind != kind or (tenant is not None and row.tenant != tenant):
            raise AuthenticationError(
                "this sign-in step expired or was already used; start again",
                reason=f"unknown {kind} challenge",
            )
        if utc(row.expires_at) <= self.clock():
            raise AuthenticationError(
                "this sign-in step expired; start again", reason=f"expired {kind} challenge"
            )
        return row

    def _take_challenge(
        self, handle: str, kind: str, tenant: str | None
    ) -> tuple[bytes, dict[str, Any], str | None]:
        """Consume a challenge: the delete's row count makes it single-use even under concurrent requests."""
        with self.store.begin() as conn:
            row = self._find_challenge(conn, handle, kind, tenant)
            gone = conn.execute(
                delete(identity_challenges).where(identity_challenges.c.id == row.id)
            ).rowcount
            if gone != 1:
                raise AuthenticationError(
                    "this sign-in step was already used", reason=f"replayed {kind} challenge"
                )
        return base64.urlsafe_b64decode(row.challenge), dict(row.state), row.user_id

    def _peek_pending(self, pending: str, tenant: str | None = None) -> Any:
        with self.store.connect() as conn:
            return self._find_challenge(conn, pending, "login", tenant)
