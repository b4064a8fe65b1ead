"""Shared fixtures: stores on SQLite and PostgreSQL, the shared data folder, realistic models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tianmu.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
POSTGRES_URL = os.environ.get("TIANMU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


from testsupport import services_required, skip_or_fail  # noqa: E402,F401 - re-exported for old imports


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'tianmu.db'}")
    yield store
    store.close()


@pytest.fixture
def postgres_store() -> Iterator[Store]:
    """A Store in a schema of its own, dropped afterwards, so parallel runs never see each other."""
    try:
        admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            schema = f"tianmu_test_{uuid.uuid4().hex[:12]}"
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        skip_or_fail(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.__class__.__name__}")
        raise  # unreachable: skip_or_fail raises
    separator = "&" if "?" in POSTGRES_URL else "?"
    store = Store(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    try:
        yield store
    finally:
        store.close()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Store:
    """The same test on both supported databases."""
    name = "sqlite_store" if request.param == "sqlite" else "postgres_store"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


REDIS_URL = os.environ.get("TIANMU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis (the Celery broker of the distributed tests); skip, or fail in CI, without it."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        skip_or_fail(f"Redis not reachable at {REDIS_URL}: {exc.__class__.__name__}")
    return REDIS_URL
