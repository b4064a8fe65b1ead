"""The audit chain against someone who can write the database: cutting or rewriting the end of the log
(with or without its last checkpoint), wiping it, or mangling a checkpoint is reported, never "intact".

Each tampering is done here with plain SQL, as an attacker holding the database would; the signed tip
file in the data directory is what the log is compared with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from identity_helpers import make_service
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.core.clock import ManualClock
from tianmu.core.config import Settings
from tianmu.identity import IdentityService, Role, cli_principal
from tianmu.identity.audit import entry_hash
from tianmu.identity.audittip import TIP_FILE
from tianmu.store.database import Store
from tianmu.store.schema import identity_audit, identity_audit_checkpoints


@pytest.fixture
def audited(store: Store, tmp_path: Path, clock: ManualClock) -> Iterator[IdentityService]:
    svc = make_service(store, tmp_path / "home", clock, checkpoint_every=5)
    svc.create_tenant("acme")
    for name in ("ann", "ben", "cyd", "dan", "eve", "fay"):  # 7 entries: a checkpoint at 5, two after
        svc.create_user(cli_principal("acme"), "acme", name, Role.VIEWER)
    yield svc


def _verify(svc: IdentityService) -> list[str]:
    report = svc.audit.verify(svc.platform_key().public_key)
    assert report.entries >= 0  # the walk ran to its end: no exception
    return report.problems


def test_an_untouched_log_is_intact_and_its_tip_is_signed(audited: IdentityService) -> None:
    report = audited.audit.verify(audited.platform_key().public_key)
    assert report.ok, report.problems
    assert report.signed_tip == report.entries == 7
    assert json.loads((audited.home / TIP_FILE).read_text())["hash"] == report.tip


def test_entries_after_the_last_checkpoint_deleted(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        conn.execute(delete(identity_audit).where(identity_audit.c.seq > 5))
    problems = _verify(audited)
    assert any("entries 6-7 are missing" in p and "signed tip" in p for p in problems), problems


def test_entries_after_the_last_checkpoint_rewritten(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        rows = list(conn.execute(select(identity_audit).where(identity_audit.c.seq >= 5).order_by("seq")))
        prev = rows[0].hash
        for row in rows[1:]:  # rewrite 6 and 7 and recompute their hashes: the chain links again
            h = entry_hash(prev, row.seq, row.at, row.tenant, "nobody", row.action, row.target, row.outcome,
                           row.details)  # fmt: skip
            conn.execute(
                update(identity_audit).where(identity_audit.c.seq == row.seq).values(actor="nobody", hash=h,
                                                                                       prev_hash=prev)
            )  # fmt: skip
            prev = h
    problems = _verify(audited)
    assert not any("altered" in p or "link" in p for p in problems)  # the chain itself is consistent
    assert any("entry 7 differs from what the signed tip" in p for p in problems), problems


def test_last_checkpoint_and_its_entries_deleted(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        conn.execute(delete(identity_audit_checkpoints))
        conn.execute(delete(identity_audit).where(identity_audit.c.seq >= 5))
    problems = _verify(audited)
    assert any("entries 5-7 are missing" in p for p in problems), problems


def test_whole_log_wiped(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        conn.execute(delete(identity_audit_checkpoints))
        conn.execute(delete(identity_audit))
    problems = _verify(audited)
    assert any("ends at entry 0" in p and "entries 1-7 are missing" in p for p in problems), problems


def test_tip_file_deleted_or_edited(audited: IdentityService) -> None:
    tip = audited.home / TIP_FILE
    record = json.loads(tip.read_text())
    tip.write_text(json.dumps({**record, "seq": 3}))  # claim a shorter log to hide later deletions
    assert any("invalid SM2 signature" in p for p in _verify(audited))
    tip.write_text("{not json")
    assert any("cannot be read" in p for p in _verify(audited))
    tip.unlink()
    assert any("tip file" in p and "missing" in p for p in _verify(audited))
    assert audited.audit.checkpoint() == 7  # the operator re-anchors it
    assert _verify(audited) == []


def test_entries_appended_behind_the_platforms_back(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        last = conn.execute(select(identity_audit).where(identity_audit.c.seq == 7)).one()
        at = last.at
        h = entry_hash(last.hash, 8, at, "acme", "cli", "user.delete", "ann", "success", "{}")
        conn.execute(
            identity_audit.insert().values(seq=8, at=at, tenant="acme", actor="cli", action="user.delete",
                                           target="ann", outcome="success", details="{}", prev_hash=last.hash,
                                           hash=h)
        )  # fmt: skip
    assert any("entries 8-8 come after the signed tip" in p for p in _verify(audited))


def test_a_rolled_back_append_leaves_the_tip_alone(audited: IdentityService) -> None:
    with pytest.raises(RuntimeError), audited.store.begin() as conn:
        audited.audit.append(conn, tenant="acme", actor="cli", action="test.append")
        raise RuntimeError("the change failed")
    assert _verify(audited) == []


def test_checkpoint_signature_not_base64_is_named(audited: IdentityService) -> None:
    with audited.store.begin() as conn:
        conn.execute(update(identity_audit_checkpoints).values(signature="!!not base64!!"))
    problems = _verify(audited)
    assert any("checkpoint 5" in p and "not valid base64" in p for p in problems), problems


def test_checkpoints_on_time_as_well_as_count(store: Store, tmp_path: Path, clock: ManualClock) -> None:
    svc = make_service(store, tmp_path / "home", clock, checkpoint_every=100)
    svc.create_tenant("acme")
    svc.create_user(cli_principal("acme"), "acme", "ann", Role.VIEWER)
    assert svc.audit.verify().checkpoints == 0
    clock.advance(3600)
    svc.create_user(cli_principal("acme"), "acme", "ben", Role.VIEWER)
    assert svc.audit.verify().last_checkpoint == 3
    clock.advance(60)
    svc.create_user(cli_principal("acme"), "acme", "cyd", Role.VIEWER)
    assert svc.audit.verify().checkpoints == 1  # not yet due again


def test_cli_verify_exits_1_naming_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIANMU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TIANMU_MASTER_KEY", "00112233445566778899aabbccddeeff")
    monkeypatch.delenv("TIANMU_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["tenant", "add", "acme"]).exit_code == 0
    assert (
        runner.invoke(app, ["user", "add", "acme", "ann", "--role", "viewer", "--no-password"]).exit_code == 0
    )
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    assert runner.invoke(app, ["audit", "checkpoint"]).exit_code == 0
    store = Store(Settings.from_env().database_url)
    with store.begin() as conn:
        conn.execute(update(identity_audit_checkpoints).values(signature="%%%"))
        conn.execute(delete(identity_audit))
    store.close()
    result = runner.invoke(app, ["audit", "verify", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and not report["ok"] and report["signed_tip"] == 2
    assert any("entries 1-2 are missing" in p for p in report["problems"]), report
    assert any("checkpoint 2" in p and "base64" in p for p in report["problems"]), report


def test_an_append_through_another_store_object_moves_the_tip(audited: IdentityService) -> None:
    other = Store(audited.store.engine.url.render_as_string(hide_password=False))
    try:
        with other.begin() as conn:
            audited.audit.append(conn, tenant="acme", actor="cli", action="test.append")
    finally:
        other.close()
    report = audited.audit.verify(audited.platform_key().public_key)
    assert report.ok and report.signed_tip == 8, report.problems
