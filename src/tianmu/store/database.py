"""Opening the database: SQLite (WAL) in the data directory by default, PostgreSQL by URL.

The schema is always brought to the newest Alembic revision on open, so a user never runs a separate
migration step, and an older database is upgraded in place without losing data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from tianmu.core.config import Settings
from tianmu.core.errors import StoreError

__all__ = ["Store", "open_store"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_BUSY_TIMEOUT_MS = 30_000
"""How long a write waits for another connection's write lock before `database is locked`."""
BRIEF_WAIT_MS = 100
"""How long a bookkeeping write (`Store.begin_brief`) waits for a lock before giving way."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while an assessment writes; NORMAL sync is safe under WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.close()


def _pragma(connection: Connection, pragma: str) -> None:
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


class Store:
    """Owns the engine. Create one per process (application factory), pass it down, `close()` at the end."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        try:
            if url.startswith("sqlite"):
                connect_args = {"timeout": _BUSY_TIMEOUT_MS / 1000}
                self.engine: Engine = create_engine(url, connect_args=connect_args)
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            if migrate:
                self.migrate()
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open database {self.safe_url}: {exc.__class__.__name__}: {exc}"
            ) from exc

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return self.engine.url.render_as_string(hide_password=True) if hasattr(self, "engine") else self.url

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        # alembic, a heavy library optional to every command that opens no store (a third of a second
        # to import), is imported only when a store is migrated.
        from alembic import command  # heavy, optional: alembic (see above)
        from alembic.config import Config  # heavy, optional: alembic (see above)

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside a transaction, committed on success and rolled back on error."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def begin_brief(self, wait_ms: int = BRIEF_WAIT_MS) -> Iterator[Connection]:
        """A transaction for a bookkeeping write that must not hold up the request it serves.

        It waits at most `wait_ms` for another connection's lock (SQLite's busy timeout, PostgreSQL's
        `lock_timeout`), then raises `sqlalchemy.exc.OperationalError`, which the caller logs and
        ignores: a job committing its results must not turn a read into an error.
        """
        with self.engine.connect() as connection:
            sqlite = self.dialect == "sqlite"
            if sqlite:
                # On the DB-API connection, not through SQLAlchemy, which would begin a transaction;
                # the pragma belongs to the pooled connection: set back before it returns to the pool.
                _pragma(connection, f"busy_timeout={int(wait_ms)}")
            try:
                with connection.begin():
                    if not sqlite:
                        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(wait_ms)}")
                    yield connection
            finally:
                if sqlite:
                    _pragma(connection, f"busy_timeout={_BUSY_TIMEOUT_MS}")

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_store(settings: Settings) -> Store:
    if settings.is_sqlite:
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {settings.home}: {exc.strerror}") from exc
    return Store(settings.database_url)
