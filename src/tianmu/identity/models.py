"""The nouns of identity: roles and permissions, tenants, users, principals, policies, sessions, tokens,
and the relying party (the site) passkeys and certificate logins are bound to."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "FACTORS",
    "ApiToken",
    "AuditEntry",
    "LoginStep",
    "Permission",
    "Policy",
    "Principal",
    "RelyingParty",
    "Role",
    "Session",
    "Tenant",
    "User",
]

FACTORS = ("password", "totp", "passkey", "certificate")
"""Factor names a policy can require."""


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"


class Permission(StrEnum):
    """What a principal may do; `tianmu.identity.permissions.ROLE_PERMISSIONS` grants them to roles."""

    SITUATION_READ = "situation:read"
    FINDINGS_READ = "findings:read"
    FINDINGS_TRIAGE = "findings:triage"
    ASSESS_RUN = "assess:run"
    ASSETS_WRITE = "assets:write"
    KB_MANAGE = "kb:manage"
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    TOKENS_MANAGE = "tokens:manage"
    POLICY_MANAGE = "policy:manage"
    AUDIT_READ = "audit:read"
    TENANT_MANAGE = "tenant:manage"
    SELF_MANAGE = "self:manage"
    """Enrol one's own passkeys and TOTP, change one's own password."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A tenant's authentication policy."""

    required_factors: tuple[tuple[str, ...], ...] = (("password",), ("passkey",), ("certificate",))
    """Alternatives: a sign-in succeeds once every factor of any one alternative is proven."""
    max_failures: int = 5
    """Consecutive failures before the account locks."""
    lockout_minutes: int = 15
    rate_limit_attempts: int = 20
    """Attempts allowed per client address in `rate_limit_window_seconds` (successful ones included)."""
    rate_limit_window_seconds: int = 60
    session_minutes: int = 480
    """Absolute session lifetime."""
    idle_minutes: int = 60
    """A session unused this long ends."""
    token_max_days: int = 365
    password_scheme: str = "argon2id"
    """`argon2id` or `sm3-pbkdf2` (sites bound to commercial cryptography)."""
    password_min_length: int = 12

    def to_json(self) -> dict[str, Any]:
        return {
            "required_factors": [list(alt) for alt in self.required_factors],
            "max_failures": self.max_failures,
            "lockout_minutes": self.lockout_minutes,
            "rate_limit_attempts": self.rate_limit_attempts,
            "rate_limit_window_seconds": self.rate_limit_window_seconds,
            "session_minutes": self.session_minutes,
            "idle_minutes": self.idle_minutes,
            "token_max_days": self.token_max_days,
            "password_scheme": self.password_scheme,
            "password_min_length": self.password_min_length,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        """Build from stored or user-given JSON; unknown keys and bad values raise ValueError."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown policy keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "required_factors" in values:
            alternatives = tuple(tuple(str(f) for f in alt) for alt in values["required_factors"])
            bad = {f for alt in alternatives for f in alt} - set(FACTORS)
            if bad or not alternatives or any(not alt for alt in alternatives):
                raise ValueError(f"required_factors must be non-empty lists of {', '.join(FACTORS)}")
            values["required_factors"] = alternatives
        for key in known - {"required_factors", "password_scheme"}:
            if key in values and (not isinstance(values[key], int) or values[key] < 0):
                raise ValueError(f"policy {key} must be a non-negative integer")
        if values.get("password_scheme", "argon2id") not in ("argon2id", "sm3-pbkdf2"):
            raise ValueError("password_scheme must be argon2id or sm3-pbkdf2")
        return cls(**values)

    def satisfied_by(self, factors: set[str] | frozenset[str]) -> bool:
        return any(set(alt) <= factors for alt in self.required_factors)

    def next_factors(self, factors: set[str] | frozenset[str]) -> list[str]:
        """Factors that would complete some alternative, nearest alternatives first."""
        options = sorted(self.required_factors, key=lambda alt: len(set(alt) - factors))
        # Prefer completing an alternative already started; if none is, any alternative will do.
        started = [alt for alt in options if set(alt) & factors] or options
        out: list[str] = []
        for alt in started:
            out.extend(f for f in alt if f not in factors and f not in out)
        return out


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    policy: Policy
    created_at: dt.datetime
    has_ca_key: bool = False
    ca_certs_pem: str = ""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    tenant: str
    username: str
    display_name: str
    role: Role
    created_at: dt.datetime
    has_password: bool = False
    has_totp: bool = False
    disabled: bool = False
    locked_until: dt.datetime | None = None
    failed_count: int = 0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a signed-in user (session) or an API token acting for one."""

    user_id: str
    tenant: str
    username: str
    role: Role
    via: str
    """`session`, `token`, `cli` (a local administrator at the command line) or `operator` (an owner of
    the operator tenant creating a tenant's first owner)."""
    scopes: frozenset[str] | None = None
    """For tokens: the permissions it was limited to (None = everything the role allows)."""
    factors: tuple[str, ...] = ()
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Where the sign-in pages are served: WebAuthn binds passkeys to `id`, assertions to `origin`."""

    id: str = "localhost"
    name: str = "Tianmu"
    origin: str = "http://localhost:8000"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    tenant: str
    user_id: str
    factors: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime
    last_seen_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    tenant: str
    user_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class LoginStep:
    """Where a sign-in stands after a factor: done (with a session secret) or which factors remain."""

    done: bool
    factors: tuple[str, ...]
    remaining: tuple[str, ...] = ()
    session_secret: str | None = None
    """The cookie value, given once when done."""
    pending: str | None = None
    """Handle of the unfinished sign-in, given back with the next factor."""
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: str
    tenant: str
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""
