"""Settings, read once from the environment and passed down (never a module-level global)."""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery broker for `tianmu worker` (Redis or RabbitMQ `amqp://` URL): TIANMU_BROKER_URL."""
    job_queue: str = "tianmu"
    """Broker queue the workers listen on (TIANMU_JOB_QUEUE): one per environment sharing a broker."""
    job_lease_seconds: float = 60.0
    """How long a worker holds a job without renewing; a job whose lease passes is run again elsewhere."""
    job_max_attempts: int = 3
    """Runs of a job that may end with its worker lost (killed, hung) before the job is failed as a
    poison job instead of being run again: TIANMU_JOB_MAX_ATTEMPTS."""
    kb_update_hours: float = 0.0
    """Period of the scheduled `kb update` job (0: off): TIANMU_KB_UPDATE_HOURS."""
    reassess_hours: float = 0.0
    """Period of the scheduled re-assessment of registered path assets (0: off): TIANMU_REASSESS_HOURS."""
    job_isolation: bool = True
    """Run each job in a child process of its own, under the limits below (TIANMU_JOB_ISOLATION=0: in
    the runner's thread, where fork is not available)."""
    job_memory_mb: int = 4096
    """Address space a job's process may take, in MiB (0: unbounded): TIANMU_JOB_MEMORY_MB."""
    job_timeout_seconds: float = 6 * 3600.0
    """Wall-clock time a job may run before it is killed and failed (0: unbounded):
    TIANMU_JOB_TIMEOUT_SECONDS."""
    limit_line_bytes: int = 1 << 20
    """Longest log line or JSON record read (TIANMU_LIMIT_LINE_BYTES)."""
    limit_decompressed_bytes: int = 4 << 30
    """Most bytes one compressed file may inflate to (TIANMU_LIMIT_DECOMPRESSED_BYTES)."""
    limit_ratio: int = 1000
    """Most decompressed bytes per compressed byte before a stream is a bomb (TIANMU_LIMIT_RATIO)."""
    limit_findings_per_rule: int = 1000
    """Findings one detection rule makes in one file (TIANMU_LIMIT_FINDINGS_PER_RULE)."""
    limit_sightings: int = 250_000
    """Sightings one detection pass keeps for correlations (TIANMU_LIMIT_SIGHTINGS)."""
    limit_sbom_components: int = 500_000
    """Components read from one SBOM; the rest are counted and reported (TIANMU_LIMIT_SBOM_COMPONENTS)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
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
        return cls(
            home=home,
            database_url=url,
            tenant=tenant,
            broker_url=env.get("TIANMU_BROKER_URL") or "redis://127.0.0.1:6379/0",
            job_queue=env.get("TIANMU_JOB_QUEUE") or "tianmu",
            job_lease_seconds=_positive(env, "TIANMU_JOB_LEASE_SECONDS", 60.0),
            job_max_attempts=max(1, int(_positive(env, "TIANMU_JOB_MAX_ATTEMPTS", 3.0))),
            kb_update_hours=_positive(env, "TIANMU_KB_UPDATE_HOURS", 0.0, allow_zero=True),
            reassess_hours=_positive(env, "TIANMU_REASSESS_HOURS", 0.0, allow_zero=True),
            job_isolation=_flag(env, "TIANMU_JOB_ISOLATION", True),
            job_memory_mb=int(_positive(env, "TIANMU_JOB_MEMORY_MB", 4096, allow_zero=True)),
            job_timeout_seconds=_positive(env, "TIANMU_JOB_TIMEOUT_SECONDS", 6 * 3600.0, allow_zero=True),
            limit_line_bytes=int(_positive(env, "TIANMU_LIMIT_LINE_BYTES", 1 << 20)),
            limit_decompressed_bytes=int(_positive(env, "TIANMU_LIMIT_DECOMPRESSED_BYTES", 4 << 30)),
            limit_ratio=int(_positive(env, "TIANMU_LIMIT_RATIO", 1000)),
            limit_findings_per_rule=int(_positive(env, "TIANMU_LIMIT_FINDINGS_PER_RULE", 1000)),
            limit_sightings=int(_positive(env, "TIANMU_LIMIT_SIGHTINGS", 250_000)),
            limit_sbom_components=int(_positive(env, "TIANMU_LIMIT_SBOM_COMPONENTS", 500_000)),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _positive(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'at least 0' if allow_zero else 'above 0'}, not {text!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = (env.get(name) or "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), not {text!r}")
