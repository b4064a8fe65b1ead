"""The audit chain: every change and sign-in recorded; edits, deletions, reordering, truncation and
rewritten history all detected (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from identity_helpers import make_service
from sqlalchemy import delete, select, update

from tianmu import gmcrypto
from tianmu.core.clock import ManualClock
from tianmu.identity import AuthenticationError, IdentityService, Role, cli_principal
from tianmu.identity.audit import entry_hash
from tianmu.store.database import Store
from tianmu.store.schema import identity_audit, identity_audit_checkpoints


@pytest.fixture
def audited(store: Store, tmp_path: Path, clock: ManualClock) -> Iterator[IdentityService]:
    svc = make_service(store, tmp_path / "home", clock, checkpoint_every=5)
    svc.create_tenant("acme")
    admin = cli_principal("acme")
    svc.create_user(admin, "acme", "ann", Role.VIEWER, password="correct horse battery")
    for name in ("ben", "cyd"):  # passkey-only users: no Argon2 work, the chain is the same
        svc.create_user(admin, "acme", name, Role.VIEWER)
    svc.password_login("acme", "ann", "correct horse battery")
    with pytest.raises(AuthenticationError):
        svc.password_login("acme", "ben", "wrong wrong wrong")
    yield svc


def actions(svc: IdentityService) -> list[str]:
    return [e.action for e in reversed(svc.audit.entries(limit=100))]


def test_every_change_and_sign_in_is_recorded(audited: IdentityService) -> None:
    assert actions(audited) == [
        "tenant.create", "user.create", "user.create", "user.create",
        "login.password", "session.create", "login.password",
    ]  # fmt: skip
    failure = audited.audit.entries(limit=1)[0]
    assert failure.outcome == "failure" and failure.target == "ben"
    report = audited.audit.verify(audited.platform_key().public_key)
    assert report.ok, report.problems
    assert report.entries == 7 and report.checkpoints == 1 and report.last_checkpoint == 5


def test_edit_is_detected(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        conn.execute(update(identity_audit).where(identity_audit.c.seq == 3).values(actor="someone-else"))
    report = audited.audit.verify()
    assert not report.ok
    assert any("entry 3 was altered" in p for p in report.problems)


def test_delete_is_detected(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        conn.execute(delete(identity_audit).where(identity_audit.c.seq == 6))
    report = audited.audit.verify()
    assert any("6 are missing" in p for p in report.problems)
    assert any("entry 7 does not link" in p for p in report.problems)


def test_reorder_is_detected(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        rows = {
            r.seq: r for r in conn.execute(select(identity_audit).where(identity_audit.c.seq.in_([2, 4])))
        }
        conn.execute(update(identity_audit).where(identity_audit.c.seq == 2).values(seq=-2))
        conn.execute(update(identity_audit).where(identity_audit.c.seq == 4).values(seq=2))
        conn.execute(update(identity_audit).where(identity_audit.c.seq == -2).values(seq=4))
    assert rows  # both existed
    report = audited.audit.verify()
    assert not report.ok
    assert any("does not link" in p or "altered" in p for p in report.problems)


def test_truncation_after_a_checkpoint_is_detected(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        conn.execute(delete(identity_audit).where(identity_audit.c.seq >= 5))
    report = audited.audit.verify()
    assert any("cut off" in p for p in report.problems)


def test_rewritten_history_is_caught_by_the_signed_checkpoint(audited: IdentityService) -> None:
    # An attacker edits entry 2 and recomputes every hash after it: the chain is consistent again,
    # but checkpoint 5 signed the old hash.
    with audited.store.begin() as conn:
        rows = list(conn.execute(select(identity_audit).order_by(identity_audit.c.seq)))
        prev = rows[0].hash
        for row in rows[1:]:
            actor = "nobody" if row.seq == 2 else row.actor
            h = entry_hash(
                prev, row.seq, row.at, row.tenant, actor, row.action, row.target, row.outcome, row.details
            )
            conn.execute(
                update(identity_audit)
                .where(identity_audit.c.seq == row.seq)
                .values(actor=actor, prev_hash=prev, hash=h)
            )
            prev = h
    report = audited.audit.verify()
    assert [p for p in report.problems if "checkpoint 5" in p], report.problems
    assert not any("altered" in p for p in report.problems)


def test_forged_checkpoint_is_detected(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        conn.execute(update(identity_audit_checkpoints).values(entry_hash="0" * 64))
    report = audited.audit.verify()
    assert any("invalid SM2 signature" in p for p in report.problems)


def test_checkpoint_by_another_key_is_flagged(
    audited: IdentityService, tmp_path: Path, clock: ManualClock
) -> None:
    stranger = gmcrypto.generate_key().public_key
    report = audited.audit.verify(stranger)
    assert any("key other than the platform key" in p for p in report.problems)
    assert audited.audit.checkpoint() == 7
    assert audited.audit.verify(audited.platform_key().public_key).checkpoints == 2


def test_concurrent_appends_keep_one_chain(store: Store, tmp_path: Path, clock: ManualClock) -> None:
    svc = make_service(store, tmp_path / "home", clock, checkpoint_every=25)
    svc.create_tenant("acme")
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(30):
                with store.begin() as conn:
                    svc.audit.append(conn, tenant="acme", actor=name, action="test.append", target=str(i))
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    report = svc.audit.verify(svc.platform_key().public_key)
    assert report.ok, report.problems
    assert report.entries == 91 and report.checkpoints == 3
