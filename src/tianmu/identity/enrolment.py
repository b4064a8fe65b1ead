"""Enrolment of a user's second factors: TOTP authenticator apps and WebAuthn passkeys.

A TOTP seed is sealed at rest under the KEK, bound to its user. Self-service enrolment keeps the new seed
in a one-time challenge until a code from the app proves the app has it; a passkey is registered against
a challenge the same way. Sign-in (`tianmu.identity.signin`) checks what is enrolled here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select

from tianmu.core.clock import Clock
from tianmu.identity import passkeys, totp
from tianmu.identity.accounts import Accounts
from tianmu.identity.audit import AuditLog
from tianmu.identity.challenges import Challenges
from tianmu.identity.errors import AuthenticationError, NotFound, PermissionDenied
from tianmu.identity.keys import Keyring
from tianmu.identity.models import Permission, Principal, RelyingParty, Role
from tianmu.identity.permissions import authorize, role_may_grant
from tianmu.identity.records import user_by_id, utc, utc_opt
from tianmu.store.database import Store
from tianmu.store.schema import identity_passkeys

__all__ = ["Enrolment", "open_totp_seed", "seal_totp_seed"]

_ENROL_MINUTES = 10
"""Time to scan the QR code and type the first code."""


def seal_totp_seed(keyring: Keyring, user_id: str, seed: str) -> str:
    return keyring.seal("totp", seed.encode("ascii"), f"totp:{user_id}")


def open_totp_seed(keyring: Keyring, row: Any) -> str | None:
    """The TOTP seed of a user row, or None when no app is enrolled."""
    if not row.totp_sealed:
        return None
    return keyring.unseal("totp", row.totp_sealed, f"totp:{row.id}").decode("ascii")


class Enrolment:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        audit: AuditLog,
        *,
        keyring: Keyring,
        rp: RelyingParty,
        challenges: Challenges,
        accounts: Accounts,
    ) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit
        self._keyring = keyring
        self._rp = rp
        self._challenges = challenges
        self._accounts = accounts

    # --- TOTP ------------------------------------------------------------------------------------------

    def enable_totp(self, principal: Principal, tenant: str, username: str) -> tuple[str, str]:
        """Give `username` a new TOTP seed (sealed at rest); returns (seed, otpauth URI) to show once."""
        seed = totp.new_seed()
        user = self._accounts.get_user(tenant, username)
        sealed = seal_totp_seed(self._keyring, user.id, seed)
        self._accounts.change_user(
            principal, tenant, username, "user.totp", {"totp_sealed": sealed, "totp_last_step": 0}
        )
        return seed, totp.provisioning_uri(seed, username, f"Tianmu ({tenant})")

    def totp_enrol_start(self, principal: Principal) -> tuple[str, str, str]:
        """Self-service: a new seed for the signed-in user, kept (sealed) with a one-time handle until a code
        from the app confirms it. Returns (handle, seed, otpauth URI)."""
        authorize(principal, Permission.SELF_MANAGE)
        seed = totp.new_seed()
        sealed = self._keyring.seal("totp-enrol", seed.encode("ascii"), f"totp-enrol:{principal.user_id}")
        handle = self._challenges.new(
            principal.tenant, "totp-enrol", principal.user_id, b"", {"sealed": sealed}, _ENROL_MINUTES
        )
        return handle, seed, totp.provisioning_uri(seed, principal.username, f"Tianmu ({principal.tenant})")

    def totp_enrol_confirm(self, principal: Principal, handle: str, code: str) -> None:
        """Switch the user to the seed started with `handle` once `code` proves their app has it."""
        authorize(principal, Permission.SELF_MANAGE)
        row = self._challenges.peek(handle, "totp-enrol", principal.tenant)
        if row.user_id != principal.user_id:
            raise AuthenticationError("this enrolment belongs to another user", reason="user mismatch")
        seed = self._keyring.unseal(
            "totp-enrol", row.state["sealed"], f"totp-enrol:{principal.user_id}"
        ).decode("ascii")
        step = totp.matching_step(seed, code, self.clock.now(), 0)
        if step is None:
            raise AuthenticationError(
                "wrong code: check the authenticator app's clock", reason="totp enrolment code"
            )
        self._challenges.take(handle, "totp-enrol", principal.tenant)
        self._accounts.change_user(
            principal,
            principal.tenant,
            principal.username,
            "user.totp",
            {"totp_sealed": seal_totp_seed(self._keyring, principal.user_id, seed), "totp_last_step": step},
        )

    # --- passkeys (a signed-in user adds one) ----------------------------------------------------------

    def passkey_register_options(self, principal: Principal) -> tuple[str, str]:
        """(handle, options JSON). The handle goes back with the authenticator's answer."""
        authorize(principal, Permission.SELF_MANAGE)
        with self.store.connect() as conn:
            user = user_by_id(conn, principal.user_id)
            existing = [
                r.id
                for r in conn.execute(
                    select(identity_passkeys.c.id).where(identity_passkeys.c.user_id == user.id)
                )
            ]
        options, challenge = passkeys.registration_options(
            rp_id=self._rp.id,
            rp_name=self._rp.name,
            user_id=user.id,
            username=user.username,
            display_name=user.display_name,
            exclude=existing,
        )
        handle = self._challenges.new(principal.tenant, "passkey-register", user.id, challenge, {})
        return handle, options

    def passkey_register_verify(
        self, principal: Principal, handle: str, credential: str | dict[str, Any], name: str = ""
    ) -> str:
        authorize(principal, Permission.SELF_MANAGE)
        challenge, _state, user_id = self._challenges.take(handle, "passkey-register", principal.tenant)
        if user_id != principal.user_id:
            raise AuthenticationError("this enrolment belongs to another user", reason="user mismatch")
        try:
            registered = passkeys.verify_registration(
                credential, challenge=challenge, rp_id=self._rp.id, origin=self._rp.origin
            )
        except AuthenticationError as exc:
            with self.store.begin() as conn:
                self.audit.append(
                    conn,
                    tenant=principal.tenant,
                    actor=principal.username,
                    action="passkey.register",
                    target=principal.username,
                    outcome="failure",
                    details={"reason": exc.reason},
                )
            raise
        with self.store.begin() as conn:
            conn.execute(
                insert(identity_passkeys).values(
                    id=registered.id,
                    tenant=principal.tenant,
                    user_id=principal.user_id,
                    name=name or "passkey",
                    public_key=registered.public_key,
                    sign_count=registered.sign_count,
                    transports=registered.transports,
                    backed_up=registered.backed_up,
                    created_at=self.clock.now(),
                )
            )
            self.audit.append(
                conn,
                tenant=principal.tenant,
                actor=principal.username,
                action="passkey.register",
                target=principal.username,
                details={"credential": registered.id[:16]},
            )
        return registered.id

    def list_passkeys(self, principal: Principal, user_id: str | None = None) -> list[dict[str, Any]]:
        """The principal's passkeys, or (for user managers of the tenant) another user's."""
        if user_id is not None and user_id != principal.user_id:
            authorize(principal, Permission.USERS_READ, self._accounts.get_user_by_id(user_id).tenant)
        with self.store.connect() as conn:
            rows = conn.execute(
                select(identity_passkeys).where(identity_passkeys.c.user_id == (user_id or principal.user_id))
            )
            return [
                {
                    "id": r.id,
                    "name": r.name,
                    "sign_count": r.sign_count,
                    "created_at": utc(r.created_at),
                    "last_used_at": utc_opt(r.last_used_at),
                }
                for r in rows
            ]

    def remove_passkey(self, principal: Principal, credential_id: str) -> None:
        """Remove a passkey (a lost or replaced device): one's own, or any in the tenant for user managers."""
        with self.store.begin() as conn:
            row = conn.execute(
                select(identity_passkeys).where(identity_passkeys.c.id == credential_id)
            ).first()
            if row is None or row.tenant != principal.tenant:
                raise NotFound(f"no passkey {credential_id[:16]}…")
            owner = user_by_id(conn, row.user_id)
            if row.user_id != principal.user_id:
                authorize(principal, Permission.USERS_MANAGE, row.tenant)
                if not role_may_grant(principal.role, Role(owner.role)):
                    raise PermissionDenied(f"role {principal.role.value} may not change a {owner.role}")
            conn.execute(delete(identity_passkeys).where(identity_passkeys.c.id == credential_id))
            self.audit.append(
                conn,
                tenant=row.tenant,
                actor=principal.username,
                action="passkey.remove",
                target=owner.username,
                details={"credential": credential_id[:16], "name": row.name},
            )
