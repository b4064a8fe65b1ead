"""Settings of the web service, read once from the environment, refusing unsafe defaults in production.

TIANMU_ENV            development (default) | production
TIANMU_SECRET_KEY     signs CSRF tokens; required (32+ characters, not the development default) outside
                      development
TIANMU_ORIGIN         the address users type, e.g. https://tianmu.example.org (WebAuthn binds passkeys
                      to it); https is required outside development
TIANMU_RP_ID          WebAuthn relying-party id; the origin's host name by default
TIANMU_TRUSTED_PROXIES  comma-separated addresses whose X-Forwarded-For is believed (rate limits)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tianmu.core.config import Settings
from tianmu.core.errors import ConfigError

__all__ = ["DEVELOPMENT_SECRET", "ServiceSettings"]

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
        )
        settings.validate()
        return settings

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
