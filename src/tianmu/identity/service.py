"""IdentityService: the one entry point the API, the dashboard and the CLI call for identity.

It owns no global state: the application factory (or a CLI command) builds one from a Store, the
key-encryption key and the WebAuthn relying party, and passes it down. Every change and every
authentication is written to the audit chain in the same transaction as the change itself.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from tianmu.gmcrypto import sm2
from tianmu.gmcrypto.sm3 import digest
from tianmu.gmcrypto.x509 import Certificate, issue_certificate, load_certificates
from tianmu.identity import passkeys, passwords, totp
from tianmu.identity.base import RelyingParty, cli_principal, utc, utc_opt
from tianmu.identity.errors import AuthenticationError, Conflict, IdentityError, NotFound, PermissionDenied
from tianmu.identity.login import LoginMixin
from tianmu.identity.models import ApiToken, Permission, Policy, Principal, Role, Tenant, User
from tianmu.identity.permissions import ROLE_PERMISSIONS, authorize, role_may_grant
from tianmu.store.schema import (
    identity_passkeys,
    identity_revoked_certs,
    identity_sessions,
    identity_tenants,
    identity_tokens,
    identity_users,
)

__all__ = ["IdentityService", "RelyingParty", "cli_principal"]


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
TOKEN_PREFIX = "tmu"


class IdentityService(LoginMixin):
    """Tenants, users, CA, tokens and enrolment here; sign-in flows and sessions from LoginMixin."""

    # --- tenants ---------------------------------------------------------------------------------------

    def create_tenant(
        self, tenant_id: str, name: str = "", *, actor: str = "cli", policy: Policy | None = None
    ) -> Tenant:
        if not _TENANT.match(tenant_id):
            raise IdentityError(f"tenant id {tenant_id!r}: use lowercase letters, digits and '-' (max 64)")
        policy = policy or Policy()
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(identity_tenants).values(
                        id=tenant_id, name=name or tenant_id, policy=policy.to_json(), created_at=self.clock()
                    )
                )
                self.audit.append(
                    conn, tenant=tenant_id, actor=actor, action="tenant.create", target=tenant_id
                )
        except DbIntegrityError as exc:
            raise Conflict(f"tenant {tenant_id!r} already exists") from exc
        return self.get_tenant(tenant_id)

    def list_tenants(self) -> list[Tenant]:
        with self.store.connect() as conn:
            return [
                self._tenant(r)
                for r in conn.execute(select(identity_tenants).order_by(identity_tenants.c.id))
            ]

    def set_policy(self, principal: Principal, tenant: str, policy: Policy) -> Tenant:
        authorize(principal, Permission.POLICY_MANAGE, tenant)
        with self.store.begin() as conn:
            self._tenant_row(conn, tenant)
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

    # --- the tenant CA for certificate login -----------------------------------------------------------

    def init_tenant_ca(self, principal: Principal, tenant: str, *, days: int = 3650) -> Certificate:
        """Create the tenant's own SM2 CA (its key sealed in the database) and trust it for login."""
        authorize(principal, Permission.TENANT_MANAGE, tenant)
        key = sm2.generate_key()
        row_name = self.get_tenant(tenant).name
        cert = issue_certificate(
            subject=f"{row_name} Tianmu CA",
            public_key=key.public_key,
            issuer_key=key,
            ca=True,
            path_length=0,
            days=days,
            not_before=self.clock(),
        )
        sealed = self.seal("tenant-ca", key.to_der(), f"tenant-ca:{tenant}")
        with self.store.begin() as conn:
            row = self._tenant_row(conn, tenant)
            bundle = (row.ca_certs or "") + cert.to_pem().decode("ascii")
            conn.execute(
                update(identity_tenants)
                .where(identity_tenants.c.id == tenant)
                .values(ca_certs=bundle, ca_key_sealed=sealed)
            )
            self.audit.append(
                conn,
                tenant=tenant,
                actor=principal.username,
                action="ca.init",
                target=cert.subject,
                details={"fingerprint": cert.fingerprint()},
            )
        return cert

    def trust_ca(self, principal: Principal, tenant: str, pem: bytes) -> list[Certificate]:
        """Add externally issued SM2 CA certificates (e.g. the organisation's USB-key CA)."""
        authorize(principal, Permission.TENANT_MANAGE, tenant)
        certs = load_certificates(pem, source="CA certificate")
        for cert in certs:
            if not cert.is_ca:
                raise IdentityError(f"{cert.subject} is not a CA certificate (basicConstraints)")
            if not cert.signed_by(cert) and cert.cert.issuer == cert.cert.subject:
                raise IdentityError(f"{cert.subject}: the self-signature does not verify")
        with self.store.begin() as conn:
            row = self._tenant_row(conn, tenant)
            bundle = (row.ca_certs or "") + "".join(c.to_pem().decode("ascii") for c in certs)
            conn.execute(
                update(identity_tenants).where(identity_tenants.c.id == tenant).values(ca_certs=bundle)
            )
            for cert in certs:
                self.audit.append(
                    conn,
                    tenant=tenant,
                    actor=principal.username,
                    action="ca.trust",
                    target=cert.subject,
                    details={"fingerprint": cert.fingerprint()},
                )
        return certs

    def issue_user_certificate(
        self,
        principal: Principal,
        tenant: str,
        username: str,
        public_key: sm2.Sm2PublicKey,
        *,
        days: int = 365,
    ) -> Certificate:
        """A login certificate for `username` from the tenant CA (CN = user name)."""
        authorize(principal, Permission.USERS_MANAGE, tenant)
        with self.store.connect() as conn:
            row = self._tenant_row(conn, tenant)
            self._user_row(conn, tenant, username)
        if not row.ca_key_sealed:
            raise IdentityError(
                f"tenant {tenant!r} has no Tianmu-managed CA: run `tianmu tenant ca-init {tenant}`"
            )
        ca_key = sm2.load_private_key(self.unseal("tenant-ca", row.ca_key_sealed, f"tenant-ca:{tenant}"))
        ca_cert = next(c for c in self.trusted_cas(tenant) if c.public_key == ca_key.public_key)
        cert = issue_certificate(
            subject=username,
            public_key=public_key,
            issuer_key=ca_key,
            issuer=ca_cert,
            days=days,
            not_before=self.clock(),
        )
        with self.store.begin() as conn:
            self.audit.append(
                conn,
                tenant=tenant,
                actor=principal.username,
                action="certificate.issue",
                target=username,
                details={"serial": format(cert.serial_number, "x"), "fingerprint": cert.fingerprint()},
            )
        return cert

    def revoke_certificate(
        self, principal: Principal, tenant: str, serial_hex: str, reason: str = ""
    ) -> None:
        authorize(principal, Permission.USERS_MANAGE, tenant)
        serial = format(int(serial_hex, 16), "x")
        with self.store.begin() as conn:
            conn.execute(
                insert(identity_revoked_certs).values(
                    tenant=tenant, serial=serial, reason=reason, revoked_at=self.clock()
                )
            )
            self.audit.append(
                conn,
                tenant=tenant,
                actor=principal.username,
                action="certificate.revoke",
                target=serial,
                details={"reason": reason},
            )

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
        if not _NAME.match(username):
            raise IdentityError(f"user name {username!r}: letters, digits and . _ @ - only (max 128)")
        policy = self.get_tenant(tenant).policy
        password_hash = None
        if password is not None:
            if problem := passwords.check_strength(password, policy.password_min_length):
                raise IdentityError(problem)
            password_hash = passwords.hash_password(password, policy.password_scheme)
        user_id = str(uuid.uuid4())
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(identity_users).values(
                        id=user_id,
                        tenant=tenant,
                        username=username,
                        display_name=display_name,
                        role=role.value,
                        password_hash=password_hash,
                        totp_last_step=0,
                        failed_count=0,
                        disabled=False,
                        created_at=self.clock(),
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
            return self._user(self._user_row(conn, tenant, username))

    def get_user_by_id(self, user_id: str) -> User:
        with self.store.connect() as conn:
            return self._user(self._user_by_id(conn, user_id))

    def list_users(self, principal: Principal, tenant: str) -> list[User]:
        authorize(principal, Permission.USERS_READ, tenant)
        with self.store.connect() as conn:
            rows = conn.execute(
                select(identity_users)
                .where(identity_users.c.tenant == tenant)
                .order_by(identity_users.c.username)
            )
            return [self._user(r) for r in rows]

    def _change_user(
        self,
        principal: Principal,
        tenant: str,
        username: str,
        action: str,
        values: dict[str, Any],
        details: dict[str, Any] | None = None,
    ) -> User:
        with self.store.begin() as conn:
            row = self._user_row(conn, tenant, username)
            if row.id != principal.user_id or action not in {"user.password", "user.totp"}:
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
        return self._change_user(
            principal, tenant, username, "user.role", {"role": role.value}, {"role": role.value}
        )

    def set_password(self, principal: Principal, tenant: str, username: str, password: str) -> User:
        policy = self.get_tenant(tenant).policy
        if problem := passwords.check_strength(password, policy.password_min_length):
            raise IdentityError(problem)
        hashed = passwords.hash_password(password, policy.password_scheme)
        user = self._change_user(
            principal,
            tenant,
            username,
            "user.password",
            {"password_hash": hashed},
            {"scheme": policy.password_scheme},
        )
        # A new password ends every other session of the user: whoever knew the old one is signed out.
        with self.store.begin() as conn:
            query = update(identity_sessions).where(
                identity_sessions.c.user_id == user.id, identity_sessions.c.revoked_at.is_(None)
            )
            if principal.session_id is not None:
                query = query.where(identity_sessions.c.id != principal.session_id)
            ended = conn.execute(query.values(revoked_at=self.clock())).rowcount
            if ended:
                self.audit.append(
                    conn,
                    tenant=tenant,
                    actor=principal.username,
                    action="session.end-all",
                    target=username,
                    details={"sessions": ended, "reason": "password changed"},
                )
        return user

    def set_disabled(self, principal: Principal, tenant: str, username: str, disabled: bool) -> User:
        action = "user.disable" if disabled else "user.enable"
        return self._change_user(principal, tenant, username, action, {"disabled": disabled})

    def unlock(self, principal: Principal, tenant: str, username: str) -> User:
        return self._change_user(
            principal, tenant, username, "user.unlock", {"failed_count": 0, "locked_until": None}
        )

    def delete_user(self, principal: Principal, tenant: str, username: str) -> None:
        authorize(principal, Permission.USERS_MANAGE, tenant)
        with self.store.begin() as conn:
            row = self._user_row(conn, tenant, username)
            if not role_may_grant(principal.role, Role(row.role)):
                raise PermissionDenied(f"role {principal.role.value} may not delete a {row.role}")
            conn.execute(delete(identity_users).where(identity_users.c.id == row.id))
            self.audit.append(
                conn, tenant=tenant, actor=principal.username, action="user.delete", target=username
            )

    # --- TOTP enrolment --------------------------------------------------------------------------------

    def enable_totp(self, principal: Principal, tenant: str, username: str) -> tuple[str, str]:
        """Give `username` a new TOTP seed (sealed at rest); returns (seed, otpauth URI) to show once."""
        seed = totp.new_seed()
        user = self.get_user(tenant, username)
        sealed = self.seal("totp", seed.encode("ascii"), f"totp:{user.id}")
        self._change_user(
            principal, tenant, username, "user.totp", {"totp_sealed": sealed, "totp_last_step": 0}
        )
        return seed, totp.provisioning_uri(seed, username, f"Tianmu ({tenant})")

    def totp_enrol_start(self, principal: Principal) -> tuple[str, str, str]:
        """Self-service: a new seed for the signed-in user, kept (sealed) with a one-time handle until a code
        from the app confirms it. Returns (handle, seed, otpauth URI)."""
        authorize(principal, Permission.SELF_MANAGE)
        seed = totp.new_seed()
        sealed = self.seal("totp-enrol", seed.encode("ascii"), f"totp-enrol:{principal.user_id}")
        handle = self._new_challenge(
            principal.tenant, "totp-enrol", principal.user_id, b"", {"sealed": sealed}, 10
        )
        return handle, seed, totp.provisioning_uri(seed, principal.username, f"Tianmu ({principal.tenant})")

    def totp_enrol_confirm(self, principal: Principal, handle: str, code: str) -> None:
        """Switch the user to the seed started with `handle` once `code` proves their app has it."""
        authorize(principal, Permission.SELF_MANAGE)
        with self.store.connect() as conn:
            row = self._find_challenge(conn, handle, "totp-enrol", principal.tenant)
        if row.user_id != principal.user_id:
            raise AuthenticationError("this enrolment belongs to another user", reason="user mismatch")
        seed = self.unseal("totp-enrol", row.state["sealed"], f"totp-enrol:{principal.user_id}").decode(
            "ascii"
        )
        step = totp.matching_step(seed, code, self.clock(), 0)
        if step is None:
            raise AuthenticationError(
                "wrong code: check the authenticator app's clock", reason="totp enrolment code"
            )
        self._take_challenge(handle, "totp-enrol", principal.tenant)
        sealed = self.seal("totp", seed.encode("ascii"), f"totp:{principal.user_id}")
        self._change_user(
            principal,
            principal.tenant,
            principal.username,
            "user.totp",
            {"totp_sealed": sealed, "totp_last_step": step},
        )

    def change_own_password(
        self, principal: Principal, current: str, new: str, *, client: str = "local"
    ) -> None:
        """Self-service change; the current password is required (a stolen session alone is not enough)."""
        authorize(principal, Permission.SELF_MANAGE)
        with self.store.connect() as conn:
            row = self._user_by_id(conn, principal.user_id)
        if row.password_hash and not passwords.verify_password(row.password_hash, current):
            raise self._fail(
                principal.tenant,
                row,
                row.username,
                "password",
                "self-service",
                "wrong current password",
                "the current password is wrong",
            )
        self.set_password(principal, principal.tenant, principal.username, new)

    # --- passkey enrolment (a signed-in user adds a passkey) -------------------------------------------

    def passkey_register_options(self, principal: Principal) -> tuple[str, str]:
        """(handle, options JSON). The handle goes back with the authenticator's answer."""
        authorize(principal, Permission.SELF_MANAGE)
        with self.store.connect() as conn:
            user = self._user_by_id(conn, principal.user_id)
            existing = [
                r.id
                for r in conn.execute(
                    select(identity_passkeys.c.id).where(identity_passkeys.c.user_id == user.id)
                )
            ]
        options, challenge = passkeys.registration_options(
            rp_id=self.rp.id,
            rp_name=self.rp.name,
            user_id=user.id,
            username=user.username,
            display_name=user.display_name,
            exclude=existing,
        )
        handle = self._new_challenge(principal.tenant, "passkey-register", user.id, challenge, {})
        return handle, options

    def passkey_register_verify(
        self, principal: Principal, handle: str, credential: str | dict[str, Any], name: str = ""
    ) -> str:
        authorize(principal, Permission.SELF_MANAGE)
        challenge, _state, user_id = self._take_challenge(handle, "passkey-register", principal.tenant)
        if user_id != principal.user_id:
            raise AuthenticationError("this enrolment belongs to another user", reason="user mismatch")
        try:
            registered = passkeys.verify_registration(
                credential, challenge=challenge, rp_id=self.rp.id, origin=self.rp.origin
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
                    created_at=self.clock(),
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
            authorize(principal, Permission.USERS_READ, self.get_user_by_id(user_id).tenant)
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
            owner = self._user_by_id(conn, row.user_id)
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

    # --- API tokens ------------------------------------------------------------------------------------

    def create_token(
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
        policy = self.get_tenant(principal.tenant).policy
        days = days or policy.token_max_days
        if days > policy.token_max_days:
            raise IdentityError(f"tokens may last at most {policy.token_max_days} days in this tenant")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = self.clock()
        with self.store.begin() as conn:
            conn.execute(
                insert(identity_tokens).values(
                    id=token_id,
                    tenant=principal.tenant,
                    user_id=principal.user_id,
                    name=name,
                    digest=digest(secret.encode("ascii")).hex(),
                    scopes=wanted,
                    created_at=now,
                    expires_at=now + dt.timedelta(days=days),
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
        record = ApiToken(
            token_id,
            principal.tenant,
            principal.user_id,
            name,
            tuple(wanted),
            now,
            now + dt.timedelta(days=days),
        )
        return f"{TOKEN_PREFIX}_{token_id}_{secret}", record

    def token_principal(self, token: str) -> Principal:
        """The principal a bearer token stands for; AuthenticationError when unknown, revoked or expired."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise AuthenticationError("invalid API token", reason="malformed token")
        token_id, secret = parts[1], parts[2]
        now = self.clock()
        with self.store.begin() as conn:
            row = conn.execute(select(identity_tokens).where(identity_tokens.c.id == token_id)).first()
            ok = row is not None and secrets.compare_digest(row.digest, digest(secret.encode("ascii")).hex())
            if not ok or row is None:
                raise AuthenticationError("invalid API token", reason="unknown token")
            if row.revoked_at is not None:
                raise AuthenticationError("this API token was revoked", reason="revoked token")
            if utc(row.expires_at) <= now:
                raise AuthenticationError("this API token has expired", reason="expired token")
            user = self._user_by_id(conn, row.user_id)
            if user.disabled:
                raise AuthenticationError("the token's user is disabled", reason="disabled user")
            conn.execute(
                update(identity_tokens).where(identity_tokens.c.id == token_id).values(last_used_at=now)
            )
        return Principal(
            user_id=user.id,
            tenant=user.tenant,
            username=user.username,
            role=Role(user.role),
            via="token",
            scopes=frozenset(row.scopes),
        )

    def list_tokens(self, principal: Principal) -> list[ApiToken]:
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

    def revoke_token(self, principal: Principal, token_id: str) -> None:
        with self.store.begin() as conn:
            row = conn.execute(select(identity_tokens).where(identity_tokens.c.id == token_id)).first()
            if row is None or row.tenant != principal.tenant:
                raise NotFound(f"no token {token_id}")
            if row.user_id != principal.user_id:
                authorize(principal, Permission.USERS_MANAGE, row.tenant)
            conn.execute(
                update(identity_tokens)
                .where(identity_tokens.c.id == token_id)
                .values(revoked_at=self.clock())
            )
            self.audit.append(
                conn, tenant=row.tenant, actor=principal.username, action="token.revoke", target=token_id
            )
