"""The tenant CA for SM2 certificate login: a CA Tianmu keeps for the tenant (its key sealed in the
database), externally issued CAs the tenant trusts (e.g. the organisation's USB-key CA), the login
certificates issued to users, and revocations."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from tianmu.core.clock import Clock
from tianmu.gmcrypto import sm2
from tianmu.gmcrypto.x509 import Certificate, issue_certificate, load_certificates
from tianmu.identity.audit import AuditLog
from tianmu.identity.errors import IdentityError
from tianmu.identity.keys import Keyring
from tianmu.identity.models import Permission, Principal
from tianmu.identity.permissions import authorize
from tianmu.identity.records import tenant_row, user_row
from tianmu.store.database import Store
from tianmu.store.schema import identity_revoked_certs, identity_tenants

__all__ = ["TenantCA"]

_SEALED = "tenant-ca"
"""Purpose of the key sealing the tenant CA key."""


class TenantCA:
    def __init__(self, store: Store, clock: Clock, audit: AuditLog, keyring: Keyring) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit
        self._keyring = keyring

    def init(self, principal: Principal, tenant: str, *, days: int = 3650) -> Certificate:
        """Create the tenant's own SM2 CA (its key sealed in the database) and trust it for login."""
        authorize(principal, Permission.TENANT_MANAGE, tenant)
        key = sm2.generate_key()
        with self.store.connect() as conn:
            tenant_name = tenant_row(conn, tenant).name
        cert = issue_certificate(
            subject=f"{tenant_name} Tianmu CA",
            public_key=key.public_key,
            issuer_key=key,
            ca=True,
            path_length=0,
            days=days,
            not_before=self.clock.now(),
        )
        sealed = self._keyring.seal(_SEALED, key.to_der(), f"tenant-ca:{tenant}")
        with self.store.begin() as conn:
            row = tenant_row(conn, tenant)
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

    def trust(self, principal: Principal, tenant: str, pem: bytes) -> list[Certificate]:
        """Add externally issued SM2 CA certificates (e.g. the organisation's USB-key CA)."""
        authorize(principal, Permission.TENANT_MANAGE, tenant)
        certs = load_certificates(pem, source="CA certificate")
        for cert in certs:
            if not cert.is_ca:
                raise IdentityError(f"{cert.subject} is not a CA certificate (basicConstraints)")
            if not cert.signed_by(cert) and cert.cert.issuer == cert.cert.subject:
                raise IdentityError(f"{cert.subject}: the self-signature does not verify")
        with self.store.begin() as conn:
            row = tenant_row(conn, tenant)
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

    def trusted(self, tenant: str) -> list[Certificate]:
        """The CA certificates the tenant trusts for certificate login."""
        with self.store.connect() as conn:
            pem = tenant_row(conn, tenant).ca_certs or ""
        return load_certificates(pem.encode("ascii"), source=f"tenant {tenant} CA bundle") if pem else []

    def revoked_serials(self, conn: Connection, tenant: str) -> set[str]:
        rows = conn.execute(
            select(identity_revoked_certs.c.serial).where(identity_revoked_certs.c.tenant == tenant)
        )
        return {r.serial for r in rows}

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
            row = tenant_row(conn, tenant)
            user_row(conn, tenant, username)
        if not row.ca_key_sealed:
            raise IdentityError(
                f"tenant {tenant!r} has no Tianmu-managed CA: run `tianmu tenant ca-init {tenant}`"
            )
        ca_key = sm2.load_private_key(self._keyring.unseal(_SEALED, row.ca_key_sealed, f"tenant-ca:{tenant}"))
        ca_cert = next(c for c in self.trusted(tenant) if c.public_key == ca_key.public_key)
        cert = issue_certificate(
            subject=username,
            public_key=public_key,
            issuer_key=ca_key,
            issuer=ca_cert,
            days=days,
            not_before=self.clock.now(),
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

    def revoke(self, principal: Principal, tenant: str, serial_hex: str, reason: str = "") -> None:
        authorize(principal, Permission.USERS_MANAGE, tenant)
        serial = format(int(serial_hex, 16), "x")
        with self.store.begin() as conn:
            conn.execute(
                insert(identity_revoked_certs).values(
                    tenant=tenant, serial=serial, reason=reason, revoked_at=self.clock.now()
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
