"""Sign-in flows (password, TOTP, passkey, SM2 certificate), the policy that combines them, lockout, rate
limits and sessions. The middle layer of `IdentityService`.

A sign-in gathers factors. After each accepted factor the tenant's policy decides: done (a session is
created and its secret returned once, for the cookie) or not yet (a one-time `pending` handle is returned,
which the next factor presents). Every attempt, good or bad, is rate-limited per client and audited;
failures count towards the account's lockout.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from tianmu.identity import certlogin, passkeys, passwords, totp
from tianmu.identity.base import IdentityBase, _hid, utc, utc_opt
from tianmu.identity.errors import AccountLocked, AuthenticationError, RateLimited
from tianmu.identity.models import LoginStep, Policy, Principal, Role
from tianmu.store.schema import (
    identity_attempts,
    identity_passkeys,
    identity_sessions,
    identity_users,
)

__all__ = ["LoginMixin"]

_PENDING_MINUTES = 10
_WRONG = "wrong user name or password"


class LoginMixin(IdentityBase):
    # --- rate limits and lockout -----------------------------------------------------------------------

    def _check_rate(self, tenant: str, client: str, policy: Policy) -> None:
        if not policy.rate_limit_attempts:
            return
        now = self.clock()
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

    def _record_attempt(self, conn: Connection, tenant: str, client: str, success: bool) -> None:
        now = self.clock()
        conn.execute(
            insert(identity_attempts).values(tenant=tenant, subject=f"ip:{client}", at=now, success=success)
        )
        conn.execute(delete(identity_attempts).where(identity_attempts.c.at < now - dt.timedelta(days=1)))

    def _check_usable(self, conn: Connection, row: Any, factor: str, client: str) -> None:
        locked = utc_opt(row.locked_until)
        if locked is not None and locked > self.clock():
            self._record_attempt(conn, row.tenant, client, False)
            self.audit.append(
                conn,
                tenant=row.tenant,
                actor=row.username,
                action=f"login.{factor}",
                target=row.username,
                outcome="failure",
                details={"reason": "locked", "client": client},
            )
            raise AccountLocked(locked)
        if row.disabled:
            self._record_attempt(conn, row.tenant, client, False)
            self.audit.append(
                conn,
                tenant=row.tenant,
                actor=row.username,
                action=f"login.{factor}",
                target=row.username,
                outcome="failure",
                details={"reason": "disabled", "client": client},
            )
            raise AuthenticationError("this account is disabled", reason="disabled")

    def _fail(
        self, tenant: str, row: Any | None, username: str, factor: str, client: str, reason: str, message: str
    ) -> AuthenticationError:
        """Record a failed factor (its own transaction, so it survives the refusal) and return the error."""
        policy = self.get_tenant(tenant).policy
        locked_until = None
        with self.store.begin() as conn:
            self._record_attempt(conn, tenant, client, False)
            if row is not None:
                failures = (
                    conn.execute(
                        select(identity_users.c.failed_count).where(identity_users.c.id == row.id)
                    ).scalar_one()
                    + 1
                )
                values: dict[str, Any] = {"failed_count": failures}
                if policy.max_failures and failures >= policy.max_failures:
                    locked_until = self.clock() + dt.timedelta(minutes=policy.lockout_minutes)
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
            return AccountLocked(locked_until)
        return AuthenticationError(message, reason=reason)

    # --- factors combined by the policy ----------------------------------------------------------------

    def _accept(
        self, row: Any, factor: str, client: str, pending: str | None, details: dict[str, Any] | None = None
    ) -> LoginStep:
        factors = {factor}
        if pending:
            _challenge, state, user_id = self._take_challenge(pending, "login", row.tenant)
            if user_id != row.id:
                raise self._fail(
                    row.tenant,
                    row,
                    row.username,
                    factor,
                    client,
                    "factor for another user",
                    "this factor belongs to another account",
                )
            factors |= set(state.get("factors", []))
        policy = self.get_tenant(row.tenant).policy
        with self.store.begin() as conn:
            self._record_attempt(conn, row.tenant, client, True)
            self.audit.append(
                conn,
                tenant=row.tenant,
                actor=row.username,
                action=f"login.{factor}",
                target=row.username,
                details={"client": client, **(details or {})},
            )
            if not policy.satisfied_by(factors):
                done = False
            else:
                done = True
                conn.execute(
                    update(identity_users)
                    .where(identity_users.c.id == row.id)
                    .values(failed_count=0, locked_until=None)
                )
                secret = self._create_session(conn, row, tuple(sorted(factors)), client, policy)
        if done:
            return LoginStep(done=True, factors=tuple(sorted(factors)), session_secret=secret, user_id=row.id)
        handle = self._new_challenge(
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
        policy = self.get_tenant(tenant).policy
        self._check_rate(tenant, client, policy)
        with self.store.begin() as conn:
            row = conn.execute(
                select(identity_users).where(
                    identity_users.c.tenant == tenant, identity_users.c.username == username
                )
            ).first()
            if row is not None:
                self._check_usable(conn, row, "password", client)
        if row is None or not row.password_hash:
            passwords.verify_password(passwords.dummy_hash(), password)  # same time as a real check
            raise self._fail(tenant, row, username, "password", client, "unknown user or no password", _WRONG)
        if not passwords.verify_password(row.password_hash, password):
            raise self._fail(tenant, row, username, "password", client, "wrong password", _WRONG)
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
        state = self._peek_pending(pending)
        policy = self.get_tenant(state.tenant).policy
        self._check_rate(state.tenant, client, policy)
        with self.store.begin() as conn:
            row = self._user_by_id(conn, state.user_id)
            self._check_usable(conn, row, "totp", client)
        seed = self._totp_seed(row)
        if seed is None:
            raise self._fail(
                row.tenant,
                row,
                row.username,
                "totp",
                client,
                "no TOTP enrolled",
                "no authenticator app is set up for this account",
            )
        step = totp.matching_step(seed, code, self.clock(), row.totp_last_step)
        if step is None:
            raise self._fail(
                row.tenant, row, row.username, "totp", client, "wrong or reused code", "wrong code"
            )
        with self.store.begin() as conn:
            # Conditional update: two requests racing with the same code cannot both pass.
            moved = conn.execute(
                update(identity_users)
                .where(identity_users.c.id == row.id, identity_users.c.totp_last_step < step)
                .values(totp_last_step=step)
            ).rowcount
        if moved != 1:
            raise self._fail(row.tenant, row, row.username, "totp", client, "reused code", "wrong code")
        return self._accept(row, "totp", client, pending)

    def passkey_login_options(self, tenant: str, *, pending: str | None = None) -> tuple[str, str]:
        """(handle, options JSON). Without `pending` any discoverable passkey of this site may answer."""
        self.get_tenant(tenant)
        allow: list[str] = []
        user_id = None
        if pending:
            user_id = self._peek_pending(pending, tenant).user_id
            with self.store.connect() as conn:
                allow = [
                    r.id
                    for r in conn.execute(
                        select(identity_passkeys.c.id).where(identity_passkeys.c.user_id == user_id)
                    )
                ]
        options, challenge = passkeys.authentication_options(rp_id=self.rp.id, allow=allow)
        return self._new_challenge(tenant, "passkey-login", user_id, challenge, {}), options

    def passkey_login_verify(
        self,
        tenant: str,
        handle: str,
        credential: str | dict[str, Any],
        *,
        client: str = "local",
        pending: str | None = None,
    ) -> LoginStep:
        policy = self.get_tenant(tenant).policy
        self._check_rate(tenant, client, policy)
        try:
            challenge, _state, expected_user = self._take_challenge(handle, "passkey-login", tenant)
        except AuthenticationError as exc:
            raise self._fail(tenant, None, "?", "passkey", client, exc.reason, str(exc)) from exc
        cred_id = passkeys.credential_id(credential)
        with self.store.begin() as conn:
            key = conn.execute(
                select(identity_passkeys).where(
                    identity_passkeys.c.id == cred_id, identity_passkeys.c.tenant == tenant
                )
            ).first()
            row = self._user_by_id(conn, key.user_id) if key is not None else None
            if row is not None:
                self._check_usable(conn, row, "passkey", client)
        if key is None or row is None:
            raise self._fail(
                tenant, None, "?", "passkey", client, "unknown credential", "this passkey is not registered"
            )
        handle_user = passkeys.user_handle(credential)
        if handle_user is not None and handle_user != row.id:
            raise self._fail(
                tenant,
                row,
                row.username,
                "passkey",
                client,
                "user handle does not match the credential",
                "this passkey belongs to another account",
            )
        if expected_user is not None and expected_user != row.id:
            raise self._fail(
                tenant,
                row,
                row.username,
                "passkey",
                client,
                "passkey of another user",
                "this passkey belongs to another account",
            )
        try:
            count = passkeys.verify_authentication(
                credential,
                challenge=challenge,
                rp_id=self.rp.id,
                origin=self.rp.origin,
                public_key=key.public_key,
                sign_count=key.sign_count,
            )
        except AuthenticationError as exc:
            raise self._fail(tenant, row, row.username, "passkey", client, exc.reason, str(exc)) from exc
        with self.store.begin() as conn:
            conn.execute(
                update(identity_passkeys)
                .where(identity_passkeys.c.id == cred_id)
                .values(sign_count=count, last_used_at=self.clock())
            )
        return self._accept(
            row, "passkey", client, pending, {"credential": cred_id[:16], "user_verified": True}
        )

    def cert_login_challenge(self, tenant: str) -> tuple[str, str, bytes]:
        """(handle, challenge text, exact message to sign with the certificate's SM2 key)."""
        self.get_tenant(tenant)
        raw = secrets.token_bytes(32)
        handle = self._new_challenge(tenant, "cert-login", None, raw, {})
        text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return handle, text, certlogin.challenge_message(tenant, self.rp.origin, text)

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
        policy = self.get_tenant(tenant).policy
        self._check_rate(tenant, client, policy)
        try:
            raw, _state, _user = self._take_challenge(handle, "cert-login", tenant)
        except AuthenticationError as exc:
            raise self._fail(tenant, None, "?", "certificate", client, exc.reason, str(exc)) from exc
        text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        message = certlogin.challenge_message(tenant, self.rp.origin, text)
        with self.store.connect() as conn:
            revoked = self.revoked_serials(conn, tenant)
        try:
            leaf = certlogin.verify_certificate_login(
                chain_pem=chain_pem,
                signature_b64=signature_b64,
                message=message,
                trusted=self.trusted_cas(tenant),
                revoked_serials=revoked,
                at=self.clock(),
            )
        except AuthenticationError as exc:
            raise self._fail(tenant, None, "?", "certificate", client, exc.reason, str(exc)) from exc
        username = leaf.common_name
        with self.store.begin() as conn:
            row = conn.execute(
                select(identity_users).where(
                    identity_users.c.tenant == tenant, identity_users.c.username == username
                )
            ).first()
            if row is not None:
                self._check_usable(conn, row, "certificate", client)
        if row is None:
            raise self._fail(
                tenant,
                None,
                username,
                "certificate",
                client,
                "no user for certificate CN",
                "no account matches this certificate",
            )
        return self._accept(
            row,
            "certificate",
            client,
            pending,
            {"serial": format(leaf.serial_number, "x"), "subject": leaf.subject},
        )

    # --- sessions --------------------------------------------------------------------------------------

    def _create_session(
        self, conn: Connection, row: Any, factors: tuple[str, ...], client: str, policy: Policy
    ) -> str:
        secret = secrets.token_urlsafe(32)
        now = self.clock()
        conn.execute(
            insert(identity_sessions).values(
                id=_hid(secret),
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

    def session_principal(self, secret: str) -> Principal:
        """The signed-in principal of a session cookie; AuthenticationError when absent, ended or idle."""
        now = self.clock()
        with self.store.begin() as conn:
            row = conn.execute(
                select(identity_sessions).where(identity_sessions.c.id == _hid(secret))
            ).first()
            if row is None or row.revoked_at is not None:
                raise AuthenticationError("please sign in", reason="no session")
            policy = self._tenant(self._tenant_row(conn, row.tenant)).policy
            idle_end = utc(row.last_seen_at) + dt.timedelta(minutes=policy.idle_minutes)
            if utc(row.expires_at) <= now or idle_end <= now:
                conn.execute(
                    update(identity_sessions).where(identity_sessions.c.id == row.id).values(revoked_at=now)
                )
                raise AuthenticationError(
                    "your session has ended; please sign in again", reason="session expired"
                )
            user = self._user_by_id(conn, row.user_id)
            if user.disabled:
                raise AuthenticationError("this account is disabled", reason="disabled")
            conn.execute(
                update(identity_sessions).where(identity_sessions.c.id == row.id).values(last_seen_at=now)
            )
        return Principal(
            user_id=user.id,
            tenant=user.tenant,
            username=user.username,
            role=Role(user.role),
            via="session",
            factors=tuple(row.factors),
            session_id=row.id,
        )

    def end_session(self, secret: str) -> None:
        with self.store.begin() as conn:
            row = conn.execute(
                select(identity_sessions).where(identity_sessions.c.id == _hid(secret))
            ).first()
            if row is None or row.revoked_at is not None:
                return
            conn.execute(
                update(identity_sessions)
                .where(identity_sessions.c.id == row.id)
                .values(revoked_at=self.clock())
            )
            user = self._user_by_id(conn, row.user_id)
            self.audit.append(
                conn, tenant=row.tenant, actor=user.username, action="session.end", target=user.username
            )
