"""Settings, read once from the environment and passed down (never a module-level global)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tianmu.core.errors import ConfigError

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    """Data directory: the SQLite database, knowledge-base downloads, quarantine."""
    database_url: str
    """SQLAlchemy URL; SQLite in `home` unless TIANMU_DATABASE_URL says otherwise."""
    tenant: str = "default"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home_text = env.get("TIANMU_HOME") or str(Path.home() / ".local" / "share" / "tianmu")
        home = Path(home_text).expanduser()
        url = env.get("TIANMU_DATABASE_URL") or f"sqlite:///{home / 'tianmu.db'}"
        if "://" not in url:
            raise ConfigError(f"TIANMU_DATABASE_URL is not a database URL: {url!r}")
        # psycopg 3 is the driver we ship; plain postgresql:// would make SQLAlchemy look for psycopg2.
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        tenant = env.get("TIANMU_TENANT") or "default"
        return cls(home=home, database_url=url, tenant=tenant)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
