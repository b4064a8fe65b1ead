"""Assessment notes are stored (bounded) and read back; the migration that adds them keeps older rows.

Before, `Assessment.notes` (what the walk left out, limits hit) was in the returned assessment only:
the assessments table had no notes column, so every stored view of a run lost them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from tianmu.core.models import Assessment, Asset, AssetKind
from tianmu.store import Store
from tianmu.store.database import _MIGRATIONS
from tianmu.store.repository import (
    MAX_NOTE_CHARS,
    MAX_NOTES,
    bounded_notes,
    list_assessments,
    save_assessment,
)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HOST = Asset("/", AssetKind.HOST, tenant="acme", label="web-01")


def _assessment(notes: list[str], asset: Asset = HOST) -> Assessment:
    return Assessment(target=asset.name, asset=asset, started=T0, finished=T0, notes=notes)


def test_notes_are_stored_and_read_back(store: Store) -> None:
    notes = [
        "walk: /proc skipped (pseudo file system proc)",
        "walk: /srv/app/.tianmuignore refused: writable by others",
        "logs: 3 file(s) vanished between the walk and their reading",
    ]
    saved = save_assessment(store, _assessment(notes))
    save_assessment(
        store, _assessment(["another tenant's note"], Asset("/", AssetKind.HOST, tenant="globex"))
    )
    [stored] = list_assessments(store, "acme", asset_id=saved.asset_id)
    assert stored.id == saved.assessment_id and stored.notes == notes
    assert [a.notes for a in list_assessments(store, "globex")] == [["another tenant's note"]]


def test_notes_are_bounded_with_a_count_of_the_rest(store: Store) -> None:
    many = [f"note {n}" for n in range(MAX_NOTES + 50)]
    many[0] = "x" * (MAX_NOTE_CHARS * 3)
    many[1] = "bad \x00 byte"
    saved = save_assessment(store, _assessment(many))
    [stored] = list_assessments(store, "acme", asset_id=saved.asset_id)
    assert len(stored.notes) == MAX_NOTES
    assert all(len(note) <= MAX_NOTE_CHARS for note in stored.notes)
    assert stored.notes[0].endswith("…") and "\x00" not in stored.notes[1]
    assert stored.notes[MAX_NOTES - 2] == f"note {MAX_NOTES - 2}"
    # 199 notes kept and the count of the 51 left out: every note is accounted for.
    assert stored.notes[-1] == "51 more notes"
    assert bounded_notes([f"n{i}" for i in range(MAX_NOTES)]) == [f"n{i}" for i in range(MAX_NOTES)]
    assert bounded_notes([]) == []


def test_migration_adds_notes_and_keeps_older_rows(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}", migrate=False)
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO assets (id, tenant, kind, name, criticality, tags, first_seen, last_seen)"
                " VALUES (1, 'acme', 'host', '/', 3, '[]', :t, :t)"
            ),
            {"t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO assessments (tenant, asset_id, target, started, finished, tianmu_version,"
                " component_count, finding_counts, errors)"
                " VALUES ('acme', 1, '/', :t, :t, '0.1', 0, '{}', '[]')"
            ),
            {"t": T0},
        )
    store.migrate()
    [old] = list_assessments(store, "acme")
    assert old.notes == [] and old.target == "/"
    save_assessment(store, _assessment(["walk: /sys skipped (pseudo file system sysfs)"]))
    newest = list_assessments(store, "acme")
    assert [a.notes for a in newest] == [["walk: /sys skipped (pseudo file system sysfs)"], []]
    store.engine.dispose()
