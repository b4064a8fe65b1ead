"""Persistence: SQLAlchemy 2 schema, Alembic migrations, repositories."""

from tianmu.store.database import Store, open_store

__all__ = ["Store", "open_store"]
