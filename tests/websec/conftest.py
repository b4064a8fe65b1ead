"""Fixtures for the website and domain tests (servers come from tests/network/servers.py)."""

from __future__ import annotations

import pytest

from network.servers import Certs, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))
