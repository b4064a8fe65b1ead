"""Fixtures for identity tests: a service on a fresh SQLite store with a settable clock, an administrator,
a user, and a software WebAuthn authenticator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from identity_helpers import SoftAuthenticator, make_service, start_clock

from tianmu.core.clock import ManualClock
from tianmu.identity import IdentityService, Principal, Role, cli_principal
from tianmu.store.database import Store


@pytest.fixture
def clock() -> ManualClock:
    return start_clock()


@pytest.fixture
def svc(tmp_path: Path, clock: ManualClock) -> Iterator[IdentityService]:
    store = Store(f"sqlite:///{tmp_path / 'id.db'}")
    service = make_service(store, tmp_path / "home", clock)
    service.create_tenant("acme", "Acme Corp")
    yield service
    store.close()


@pytest.fixture
def admin() -> Principal:
    return cli_principal("acme")


@pytest.fixture
def authenticator() -> SoftAuthenticator:
    return SoftAuthenticator()


@pytest.fixture
def alice(svc: IdentityService, admin: Principal) -> str:
    svc.create_user(admin, "acme", "alice", Role.ANALYST, password="correct horse battery")
    return "alice"
