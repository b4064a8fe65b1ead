"""Bookkeeping on the read path: a token's last use is written at most once a minute, and a use the
database will not record (its write lock held by a committing job) still authenticates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from identity_helpers import login_principal, make_service
from sqlalchemy import update

from tianmu.core.clock import ManualClock
from tianmu.identity import IdentityService, Principal, Role, cli_principal
from tianmu.store.database import Store
from tianmu.store.schema import identity_tokens

PASSWORD = "correct horse battery"


def _last_used(svc: IdentityService, principal: Principal, name: str) -> object:
    (token,) = [t for t in svc.tokens.owned_by(principal) if t.name == name]
    return token.last_used_at


def test_last_use_is_written_once_a_minute(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    svc.set_role(admin, "acme", "alice", Role.ADMIN)
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    token, _ = svc.create_token(principal, "ci")
    svc.token_principal(token)
    first = _last_used(svc, principal, "ci")
    assert first == clock.now()
    clock.advance(59)
    svc.token_principal(token)
    assert _last_used(svc, principal, "ci") == first  # no write for a use within the minute
    clock.advance(1)
    svc.token_principal(token)
    assert _last_used(svc, principal, "ci") == clock.now()


def test_a_use_not_recorded_under_a_lock_still_authenticates(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock, tmp_path: Path
) -> None:
    svc.set_role(admin, "acme", "alice", Role.ADMIN)
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    token, _ = svc.create_token(principal, "ci")
    other = sqlite3.connect(tmp_path / "id.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert svc.token_principal(token).username == "alice"
        assert _last_used(svc, principal, "ci") is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert svc.token_principal(token).username == "alice"
    assert _last_used(svc, principal, "ci") == clock.now()


def test_a_token_row_locked_by_another_transaction_gives_way_on_both_databases(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    # On PostgreSQL the bookkeeping write waits at most `lock_timeout`, on SQLite the busy timeout.
    svc = make_service(store, tmp_path / "home", clock)
    svc.create_tenant("acme")
    svc.create_user(cli_principal("acme"), "acme", "alice", Role.ADMIN, password=PASSWORD)
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    token, record = svc.create_token(principal, "ci")
    with store.engine.connect() as other, other.begin():
        other.execute(update(identity_tokens).where(identity_tokens.c.id == record.id).values(name="ci"))
        assert svc.token_principal(token).username == "alice"
        assert _last_used(svc, principal, "ci") is None
    assert svc.token_principal(token).username == "alice"
    assert _last_used(svc, principal, "ci") == clock.now()
