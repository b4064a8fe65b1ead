"""Opening the store: data directory, WAL, settings from the environment, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tianmu.core.config import Settings
from tianmu.core.errors import ConfigError, StoreError
from tianmu.store import Store, open_store


def test_default_is_sqlite_in_tianmu_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"TIANMU_HOME": str(tmp_path / "home")})
    assert settings.database_url == f"sqlite:///{tmp_path / 'home' / 'tianmu.db'}"
    with open_store(settings) as store, store.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "home" / "tianmu.db").is_file()


def test_home_defaults_to_xdg_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings.from_env({})
    assert settings.home == tmp_path / ".local" / "share" / "tianmu"


def test_postgres_url_gets_the_psycopg3_driver() -> None:
    settings = Settings.from_env({"TIANMU_DATABASE_URL": "postgresql://u@db/tianmu"})
    assert settings.database_url == "postgresql+psycopg://u@db/tianmu"
    assert not settings.is_sqlite


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        Settings.from_env({"TIANMU_DATABASE_URL": "tianmu.db"})


def test_reopening_an_existing_database_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with Store(url) as store, store.begin() as conn:
        conn.execute(
            text("INSERT INTO epss_scores (cve_id, score, percentile) VALUES ('CVE-2021-1', 0.5, 0.9)")
        )
    with Store(url) as store, store.connect() as conn:
        assert conn.execute(text("SELECT score FROM epss_scores")).scalar() == 0.5


def test_unusable_data_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = Settings.from_env({"TIANMU_HOME": str(blocker / "home")})
    with pytest.raises(StoreError, match="cannot create the data directory"):
        open_store(settings)


def test_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        Store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
