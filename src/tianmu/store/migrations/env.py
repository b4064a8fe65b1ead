"""Alembic environment: migrations run on the connection the Store hands over (never from a .ini URL)."""

from __future__ import annotations

from alembic import context

from tianmu.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Tianmu migrations run through tianmu.store.Store.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
