"""A read request never fails on a bookkeeping write: while another connection holds the SQLite
database's write lock (a job committing its results), reading a job by token or by session still
answers 200, and the token's `last_used_at` is kept, written at most once a minute."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

from tianmu.identity import IdentityService, Principal, Role
from tianmu.jobs import queue


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(tmp_path / "home")


@pytest.fixture
def client(platform: Platform) -> TestClient:
    # No `with`: the runner is not started, so the queued job stays as it is.
    return TestClient(platform.app, base_url="http://localhost:8000")


@contextmanager
def write_locked(platform: Platform) -> Iterator[None]:
    """Hold the database's write lock from another connection, as a job saving its results does."""
    other = sqlite3.connect(platform.app.state.settings.home / "tianmu.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE jobs SET progress = progress")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def _token_last_used(platform: Platform) -> dt.datetime | None:
    identity: IdentityService = platform.app.state.identity
    alice = identity.get_user("acme", "alice")
    acting = Principal(user_id=alice.id, tenant="acme", username="alice", role=Role.ADMIN, via="session")
    (token,) = [t for t in identity.tokens.owned_by(acting) if t.name == "tests"]
    return token.last_used_at


def test_reading_a_job_by_token_while_a_job_commits_answers(client: TestClient, platform: Platform) -> None:
    job, _ = queue.submit(platform.app.state.store, "reassess", {}, tenant="acme")
    assert _token_last_used(platform) is None
    with write_locked(platform):
        response = client.get(f"/api/v1/jobs/{job.id}", headers=bearer(platform, "alice-token"))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == job.id
        # The bookkeeping write gave way to the job's transaction: nothing recorded, nothing failed.
        assert _token_last_used(platform) is None
    # Once the lock is gone, the next request records the use.
    assert client.get(f"/api/v1/jobs/{job.id}", headers=bearer(platform, "alice-token")).status_code == 200
    assert _token_last_used(platform) is not None


def test_reading_by_session_while_a_job_commits_answers(client: TestClient, platform: Platform) -> None:
    job, _ = queue.submit(platform.app.state.store, "reassess", {}, tenant="acme")
    with write_locked(platform):
        for _ in range(2):
            response = client.get(f"/api/v1/jobs/{job.id}", headers=bearer(platform, "anna"))
            assert response.status_code == 200, response.text
