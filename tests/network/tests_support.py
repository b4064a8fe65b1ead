"""Helpers for tests over this machine's own services."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from testsupport import skip_or_fail
from tianmu.situation import posture_history
from tianmu.store import Store
from tianmu.store.repository import list_findings


def machine_port(port: int, what: str, *, required: bool = True) -> int:
    """The port of a service this machine runs on 127.0.0.1, or a skip (a failure where services are
    promised, for the ones the test environment guarantees: Redis, PostgreSQL, RabbitMQ)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return port
    except OSError:
        if required:
            skip_or_fail(f"{what} not listening on 127.0.0.1:{port}")
        pytest.skip(f"{what} not listening on 127.0.0.1:{port}")
    raise AssertionError("unreachable")


def cli_env(home: Path) -> dict[str, str]:
    """The environment for a `tianmu` command run by CliRunner with its data directory in `home`."""
    return {"TIANMU_HOME": str(home), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


def home_store(home: Path) -> Store:
    """The store `tianmu` opens with TIANMU_HOME=`home` (SQLite in the data directory)."""
    home.mkdir(parents=True, exist_ok=True)
    return Store(f"sqlite:///{home / 'tianmu.db'}")


def assert_situation_moved(store: Store, rules: set[str]) -> None:
    """The run finished like `assess`: findings stored, and a posture point (risk) recorded over them."""
    stored = {s.finding.rule_id for s in list_findings(store, "default")}
    assert rules <= stored, rules - stored
    [point] = posture_history(store, "default")
    assert point.assessment_id is not None and point.open_findings == len(stored) and point.score > 0
