"""Identity: tenants, users, roles and permissions; passwords, TOTP, WebAuthn passkeys (user verification
required — the web's way to fingerprint and face recognition), SM2 certificate login; API tokens; per-tenant
policies, lockout and rate limits; sessions; and the SM3/SM2 audit chain.

`IdentityService` is the one entry point (a facade over accounts, the tenant CA, enrolment, sign-in,
lockout, sessions and tokens); `authorize` is the one place permissions are decided.
"""

from __future__ import annotations

from tianmu.identity.audit import AuditLog, AuditReport
from tianmu.identity.errors import (
    AccountLocked,
    AuthenticationError,
    Conflict,
    IdentityError,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from tianmu.identity.models import (
    ApiToken,
    LoginStep,
    Permission,
    Policy,
    Principal,
    RelyingParty,
    Role,
    Tenant,
    User,
)
from tianmu.identity.permissions import ROLE_PERMISSIONS, authorize, can, cli_principal
from tianmu.identity.service import IdentityService

__all__ = [
    "ROLE_PERMISSIONS",
    "AccountLocked",
    "ApiToken",
    "AuditLog",
    "AuditReport",
    "AuthenticationError",
    "Conflict",
    "IdentityError",
    "IdentityService",
    "LoginStep",
    "NotFound",
    "Permission",
    "PermissionDenied",
    "Policy",
    "Principal",
    "RateLimited",
    "RelyingParty",
    "Role",
    "Tenant",
    "User",
    "authorize",
    "can",
    "cli_principal",
]
