"""Settings of the web service, read once from the environment, refusing unsafe defaults in production.

TIANMU_ENV            development (default) | production
TIANMU_SECRET_KEY     signs CSRF tokens; required (32+ characters, not the development default) outside
                      development
TIANMU_ORIGIN         the address users type, e.g. https://tianmu.example.org (WebAuthn binds passkeys
                      to it); https is required outside development
TIANMU_RP_ID          WebAuthn relying-party id; the origin's host name by default
TIANMU_TRUSTED_PROXIES  comma-separated addresses whose X-Forwarded-For is believed (rate limits)
TIANMU_ASSESS_ROOTS   the server folders each tenant's jobs may read, e.g. `acme=/srv/acme:/data/shop;
                      globex=/srv/globex` (`*=` for every tenant); none by default: jobs work on uploads
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tianmu.core.config import Settings
from tianmu.core.errors import ConfigError

__all__ = ["DEVELOPMENT_SECRET", "ServiceSettings", "parse_assess_roots"]

DEVELOPMENT_SECRET = "tianmu-development-secret-do-not-use-in-production"


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    core: Settings
    environment: str = "development"
    secret_key: str = DEVELOPMENT_SECRET
    origin: str = "http://localhost:8000"
    rp_id: str = ""
    rp_name: str = "Tianmu"
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)
    operator_tenant: str = ""
    """The tenant whose owners may create tenants through the API (`TIANMU_OPERATOR_TENANT`); empty:
    tenants are created at the command line only (`tianmu.identity.provisioning`)."""
    assess_roots: tuple[tuple[str, tuple[Path, ...]], ...] = ()
    """(tenant or "*", folders) pairs: the only server paths a job submitted through the API may read
    (`TIANMU_ASSESS_ROOTS`); besides them, a tenant's own uploads. Empty: uploads only."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if environ is None else environ
        core = Settings.from_env(dict(env))
        origin = env.get("TIANMU_ORIGIN", "http://localhost:8000").rstrip("/")
        settings = cls(
            core=core,
            environment=env.get("TIANMU_ENV", "development"),
            secret_key=env.get("TIANMU_SECRET_KEY", DEVELOPMENT_SECRET),
            origin=origin,
            rp_id=env.get("TIANMU_RP_ID", ""),
            trusted_proxies=tuple(
                p.strip() for p in env.get("TIANMU_TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
            operator_tenant=env.get("TIANMU_OPERATOR_TENANT", "").strip(),
            assess_roots=parse_assess_roots(env.get("TIANMU_ASSESS_ROOTS", "")),
        )
        settings.validate()
        return settings

    def roots_for(self, tenant: str) -> tuple[Path, ...]:
        """The server folders `tenant`'s jobs may read (its own and those given to every tenant)."""
        return tuple(root for name, roots in self.assess_roots if name in (tenant, "*") for root in roots)

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @property
    def relying_party_id(self) -> str:
        return self.rp_id or (urlsplit(self.origin).hostname or "localhost")

    @property
    def cookie_secure(self) -> bool:
        return self.origin.startswith("https://")

    def validate(self) -> None:
        """Raise ConfigError for settings that are unsafe (or simply wrong) where they would be used."""
        if self.environment not in ("development", "production"):
            raise ConfigError(f"TIANMU_ENV must be development or production, not {self.environment!r}")
        parts = urlsplit(self.origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(
                f"TIANMU_ORIGIN must be a scheme and host such as https://tianmu.example.org, "
                f"not {self.origin!r}"
            )
        host = parts.hostname
        rp_id = self.relying_party_id
        if host != rp_id and not host.endswith("." + rp_id):
            raise ConfigError(
                f"TIANMU_RP_ID {rp_id!r} must be the origin's host {host!r} or a parent domain of it"
            )
        if self.is_development:
            return
        if self.secret_key == DEVELOPMENT_SECRET:
            raise ConfigError(
                "TIANMU_SECRET_KEY is the development default; set a random secret in production"
            )
        if len(self.secret_key) < 32:
            raise ConfigError("TIANMU_SECRET_KEY must have at least 32 characters")
        if parts.scheme != "https":
            raise ConfigError("TIANMU_ORIGIN must use https in production (secure cookies, passkeys)")


def parse_assess_roots(text: str) -> tuple[tuple[str, tuple[Path, ...]], ...]:
    """`acme=/srv/a:/srv/b;*=/srv/shared` → (("acme", (/srv/a, /srv/b)), ("*", (/srv/shared,))).

    Folders must be absolute (a relative one would depend on where the service was started); each is
    kept resolved, so that a path is compared with where the folder really is.
    """
    parsed = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        tenant, sep, folders = part.partition("=")
        tenant = tenant.strip()
        roots = tuple(Path(f.strip()) for f in folders.split(os.pathsep) if f.strip())
        if not sep or not tenant or not roots:
            raise ConfigError(f"TIANMU_ASSESS_ROOTS: {part!r} is not tenant=/folder[:/folder...]")
        relative = [str(r) for r in roots if not r.is_absolute()]
        if relative:
            raise ConfigError(f"TIANMU_ASSESS_ROOTS: folders must be absolute, not {', '.join(relative)}")
        parsed.append((tenant, tuple(Path(os.path.realpath(r)) for r in roots)))
    return tuple(parsed)
