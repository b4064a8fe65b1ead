"""Fixtures for the web service: an app on a fresh SQLite store with one tenant and users, and a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from service_helpers import seeded_app


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return seeded_app(tmp_path / "home")


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://localhost:8000") as test_client:
        yield test_client
