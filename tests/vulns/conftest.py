"""Fixtures for the vulnerability knowledge base and matcher tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from vulns_helpers import OSV_DIR

from tianmu.store.database import Store


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store("sqlite:///" + str(tmp_path / "t.db"))
    yield db
    db.close()


@pytest.fixture()
def osv_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture OSV directory."""
    target = tmp_path / "osv-copy"
    shutil.copytree(OSV_DIR, target)
    return target
