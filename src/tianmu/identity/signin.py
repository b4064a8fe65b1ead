"""Sign-in flows (password, TOTP, passkey, SM2 certificate) and the tenant policy that combines them.

A sign-in gathers factors. After each accepted factor the tenant's policy decides: done (a session is
created and its secret returned once, for the cookie) or not yet (a one-time `pending` handle is returned,
which the next factor presents). Every attempt, good or bad, is rate-limited per client and audited;
failures count towards the account's lockout (`tianmu.identity.lockout`).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from sqlalchemy import select, update

from tianmu.core.clock import Clock
from tianmu.identity import certlogin, passkeys, passwords, totp
from tianmu.identity.audit import AuditLog
from tianmu.identity.certificates import TenantCA
from tianmu.identity.challenges import Challenges
from tianmu.identity.enrolment import open_totp_seed
from tianmu.identity.errors import AuthenticationError
from tianmu.identity.keys import Keyring
from tianmu.identity.lockout import Lockout
from tianmu.identity.models import LoginStep, Policy, RelyingParty
from tianmu.identity.records import find_user, tenant_from_row, tenant_row, user_by_id
from tianmu.identity.sessions import Sessions
from tianmu.store.database import Store
from tianmu.store.schema import identity_passkeys, identity_users

__all__ = ["SignIn"]

_PENDING_MINUTES = 10
_WRONG = "wrong user name or password (after repeated failures an account is locked for a while)"
"""The one answer of the password step to every failure: unknown user, wrong password, locked or
disabled account — so that it never tells which accounts exist."""


class SignIn:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        audit: AuditLog,
        *,
        keyring: Keyring,
        rp: RelyingParty,
        challenges: Challenges,
        lockout: Lockout,
        sessions: Sessions,
        ca: TenantCA,
    ) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit
        self._keyring = keyring
        self._rp = rp
        self._challenges = challenges
        self._lockout = lockout
        self._sessions = sessions
        self._ca = ca

    def _policy(self, tenant: str) -> Policy:
        with self.store.connect() as conn:
            return tenant_from_row(tenant_row(conn, tenant)).policy

    def _accept(
        self, row: Any, factor: str, client: str, pending: str | None, details: dict[str, Any] | None = None
    ) -> LoginStep:
        """Record an accepted factor; finish the sign-in when the policy is satisfied, else hand out the
        `pending` handle for the next factor."""
        factors = {factor}
        if pending:
            _challenge, state, user_id = self._challenges.take(pending, "login", row.tenant)
            if user_id != row.id:
                raise self._lockout.fail(
                    row.tenant,
                    row,
                    row.username,
                    factor,
                    client,
                    "factor for another user",
                    "this factor belongs to another account",
                )
            factors |= set(state.get("factors", []))
        policy = self._policy(row.tenant)
        done = policy.satisfied_by(factors)
        with self.store.begin() as conn:
            self._lockout.record_attempt(conn, row.tenant, client, True)
            self.audit.append(
                conn,
                tenant=row.tenant,
                actor=row.username,
                action=f"login.{factor}",
                target=row.username,
                details={"client": client, **(details or {})},
            )
            if done:
                self._lockout.clear(conn, row.id)
                secret = self._sessions.create(conn, row, tuple(sorted(factors)), client, policy)
        if done:
            return LoginStep(done=True, factors=tuple(sorted(factors)), session_secret=secret, user_id=row.id)
        handle = self._challenges.new(
            row.tenant, "login", row.id, b"", {"factors": sorted(factors)}, _PENDING_MINUTES
        )
        return LoginStep(
            done=False,
            factors=tuple(sorted(factors)),
            remaining=tuple(policy.next_factors(factors)),
            pending=handle,
            user_id=row.id,
        )

    def password_login(
        self, tenant: str, username: str, password: str, *, client: str = "local", pending: str | None = None
    ) -> LoginStep:
        policy = self._policy(tenant)
        self._lockout.check_rate(tenant, client, policy)
        with self.store.connect() as conn:
            row = find_user(conn, tenant, username)
        hashed = row.password_hash if row is not None else None
        known = bool(hashed)
        # Every account, known or not, locked or not, costs one password hash: the answer's time tells
        # nothing either.
        matches = passwords.verify_password(hashed if hashed else passwords.dummy_hash(), password)
        refusal = self._lockout.refusal(row) if row is not None else None
        if row is not None and refusal is not None:
            raise self._lockout.refuse(row, "password", client, refusal, disclose=False, message=_WRONG)

        def fail(reason: str) -> AuthenticationError:
            return self._lockout.fail(
                tenant, row, username, "password", client, reason, _WRONG, disclose_lock=False
            )

        if row is None or not known:
            raise fail("unknown user or no password")
        if not matches:
            raise fail("wrong password")
        if passwords.needs_rehash(row.password_hash, policy.password_scheme):
            with self.store.begin() as conn:
                conn.execute(
                    update(identity_users)
                    .where(identity_users.c.id == row.id)
                    .values(password_hash=passwords.hash_password(password, policy.password_scheme))
                )
        return self._accept(row, "password", client, pending)

    def totp_login(self, pending: str, code: str, *, client: str = "local") -> LoginStep:
        """TOTP completes a sign-in another factor started (a code alone never identifies anyone)."""
        state = self._challenges.peek(pending, "login")
        self._lockout.check_rate(state.tenant, client, self._policy(state.tenant))
        with self.store.connect() as conn:
            row = user_by_id(conn, state.user_id)
        self._lockout.check_usable(row, "totp", client)
        fail = self._lockout.fail
        seed = open_totp_seed(self._keyring, row)
        if seed is None:
            raise fail(
                row.tenant,
                row,
                row.username,
                "totp",
                client,
                "no TOTP enrolled",
                "no authenticator app is set up for this account",
            )
        step = totp.matching_step(seed, code, self.clock.now(), row.totp_last_step)
        if step is None:
            raise fail(row.tenant, row, row.username, "totp", client, "wrong or reused code", "wrong code")
        with self.store.begin() as conn:
            # Conditional update: two requests racing with the same code cannot both pass.
            moved = conn.execute(
                update(identity_users)
                .where(identity_users.c.id == row.id, identity_users.c.totp_last_step < step)
                .values(totp_last_step=step)
            ).rowcount
        if moved != 1:
            raise fail(row.tenant, row, row.username, "totp", client, "reused code", "wrong code")
        return self._accept(row, "totp", client, pending)

    def passkey_login_options(self, tenant: str, *, pending: str | None = None) -> tuple[str, str]:
        """(handle, options JSON). Without `pending` any discoverable passkey of this site may answer."""
        self._policy(tenant)  # the tenant must exist
        allow: list[str] = []
        user_id = None
        if pending:
            user_id = self._challenges.peek(pending, "login", tenant).user_id
            with self.store.connect() as conn:
                allow = [
                    r.id
                    for r in conn.execute(
                        select(identity_passkeys.c.id).where(identity_passkeys.c.user_id == user_id)
                    )
                ]
        options, challenge = passkeys.authentication_options(rp_id=self._rp.id, allow=allow)
        return self._challenges.new(tenant, "passkey-login", user_id, challenge, {}), options

    def passkey_login_verify(
        self,
        tenant: str,
        handle: str,
        credential: str | dict[str, Any],
        *,
        client: str = "local",
        pending: str | None = None,
    ) -> LoginStep:
        self._lockout.check_rate(tenant, client, self._policy(tenant))
        fail = self._lockout.fail
        try:
            challenge, _state, expected_user = self._challenges.take(handle, "passkey-login", tenant)
        except AuthenticationError as exc:
            raise fail(tenant, None, "?", "passkey", client, exc.reason, str(exc)) from exc
        cred_id = passkeys.credential_id(credential)
        with self.store.connect() as conn:
            key = conn.execute(
                select(identity_passkeys).where(
                    identity_passkeys.c.id == cred_id, identity_passkeys.c.tenant == tenant
                )
            ).first()
            row = user_by_id(conn, key.user_id) if key is not None else None
        if row is not None:
            self._lockout.check_usable(row, "passkey", client)
        if key is None or row is None:
            raise fail(
                tenant, None, "?", "passkey", client, "unknown credential", "this passkey is not registered"
            )
        another = "this passkey belongs to another account"
        handle_user = passkeys.user_handle(credential)
        if handle_user is not None and handle_user != row.id:
            reason = "user handle does not match the credential"
            raise fail(tenant, row, row.username, "passkey", client, reason, another)
        if expected_user is not None and expected_user != row.id:
            raise fail(tenant, row, row.username, "passkey", client, "passkey of another user", another)
        try:
            count = passkeys.verify_authentication(
                credential,
                challenge=challenge,
                rp_id=self._rp.id,
                origin=self._rp.origin,
                public_key=key.public_key,
                sign_count=key.sign_count,
            )
        except AuthenticationError as exc:
            raise fail(tenant, row, row.username, "passkey", client, exc.reason, str(exc)) from exc
        with self.store.begin() as conn:
            conn.execute(
                update(identity_passkeys)
                .where(identity_passkeys.c.id == cred_id)
                .values(sign_count=count, last_used_at=self.clock.now())
            )
        return self._accept(
            row, "passkey", client, pending, {"credential": cred_id[:16], "user_verified": True}
        )

    def cert_login_challenge(self, tenant: str) -> tuple[str, str, bytes]:
        """(handle, challenge text, exact message to sign with the certificate's SM2 key)."""
        self._policy(tenant)  # the tenant must exist
        raw = secrets.token_bytes(32)
        handle = self._challenges.new(tenant, "cert-login", None, raw, {})
        text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return handle, text, certlogin.challenge_message(tenant, self._rp.origin, text)

    def cert_login_verify(
        self,
        tenant: str,
        handle: str,
        chain_pem: bytes,
        signature_b64: str,
        *,
        client: str = "local",
        pending: str | None = None,
    ) -> LoginStep:
        self._lockout.check_rate(tenant, client, self._policy(tenant))
        fail = self._lockout.fail
        try:
            raw, _state, _user = self._challenges.take(handle, "cert-login", tenant)
        except AuthenticationError as exc:
            raise fail(tenant, None, "?", "certificate", client, exc.reason, str(exc)) from exc
        text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        message = certlogin.challenge_message(tenant, self._rp.origin, text)
        with self.store.connect() as conn:
            revoked = self._ca.revoked_serials(conn, tenant)
        try:
            leaf = certlogin.verify_certificate_login(
                chain_pem=chain_pem,
                signature_b64=signature_b64,
                message=message,
                trusted=self._ca.trusted(tenant),
                revoked_serials=revoked,
                at=self.clock.now(),
            )
        except AuthenticationError as exc:
            raise fail(tenant, None, "?", "certificate", client, exc.reason, str(exc)) from exc
        username = leaf.common_name
        with self.store.connect() as conn:
            row = find_user(conn, tenant, username)
        if row is not None:
            self._lockout.check_usable(row, "certificate", client)
        if row is None:
            reason, message_text = "no user for certificate CN", "no account matches this certificate"
            raise fail(tenant, None, username, "certificate", client, reason, message_text)
        return self._accept(
            row,
            "certificate",
            client,
            pending,
            {"serial": format(leaf.serial_number, "x"), "subject": leaf.subject},
        )
