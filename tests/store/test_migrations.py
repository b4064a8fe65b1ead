"""The Alembic migrations build exactly the schema that `tianmu.store.schema` declares.

Every capability writes its own migration branch by hand; this test is what keeps the hand-written
migrations and the table definitions from drifting apart, on both databases.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from tianmu.store import Store
from tianmu.store.database import _MIGRATIONS
from tianmu.store.schema import metadata


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(config)


def test_migrated_database_matches_the_declared_schema(store: Store) -> None:
    with store.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
        applied = set(context.get_current_heads())
    assert differences == []
    assert applied == set(_script().get_heads())


def test_every_branch_starts_from_the_core_revision() -> None:
    script = _script()
    assert list(script.get_bases()) == ["0001"]
    for revision in script.walk_revisions():
        if revision.revision != "0001":
            assert revision.down_revision, f"{revision.revision} has no parent revision"
