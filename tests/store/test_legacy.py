"""Old-scheme rows found again under the new fingerprints (`tianmu.store.legacy`), on SQLite and PostgreSQL.

The road's end-to-end cases are in tests/road/test_triage_upgrade.py; these are the places the road's
tests do not reach (a host assessed as `/`, a single-file asset, an archive member), the incidents and
alert states that name a re-keyed finding, and the cost: the look-ups a save makes read the unique
indexes and never scan a table of 20,000 findings.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import event, insert, select, text

from tianmu.core.models import (
    Assessment,
    Asset,
    AssetKind,
    Component,
    Finding,
    FindingKind,
    Location,
    Severity,
    TriageStatus,
    utcnow,
)
from tianmu.store import Store
from tianmu.store.repository import save_assessment, set_status
from tianmu.store.schema import findings, situation_alert_state, situation_incidents

HOST = Asset(name="/", kind=AssetKind.DIRECTORY)
SRV = Asset(name="/srv", kind=AssetKind.REPOSITORY)
LOCKFILE = Asset(name="/srv/app/requirements.txt", kind=AssetKind.DIRECTORY)


def old_formula(finding: Finding) -> str:
    """`finding_fingerprint` before issue 21 (git show 309a603~1:src/tianmu/core/models.py)."""
    comp = finding.component
    key: dict[str, Any] = {
        "tenant": finding.asset.tenant,
        "asset": [finding.asset.kind.value, finding.asset.name],
        "kind": finding.kind.value,
        "rule": finding.rule_id,
    }
    if comp is not None:
        key["component"] = [
            comp.ecosystem,
            comp.name,
            comp.version,
            comp.location.path if comp.location else None,
        ]
    if "fingerprint_extra" in finding.evidence:
        key["extra"] = finding.evidence["fingerprint_extra"]
    blob = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def sample(asset: Asset, path: str, absolute: str | None = None) -> Finding:
    """A sample as the malware engine writes it; with `absolute`, keyed on its file as the road keys it."""
    evidence: dict[str, Any] = {"path": path, "fingerprint_extra": absolute or path}
    if absolute is not None:
        evidence["fingerprint_file"] = absolute
    return Finding(FindingKind.MALWARE, "EICAR", "EICAR", Severity.HIGH, asset, evidence=evidence)


def pin(asset: Asset, path: str, absolute: str | None = None) -> Finding:
    component = Component("salt", "3000.1", "PyPI", "pkg:pypi/salt@3000.1", location=Location(path, 1))
    evidence = {"fingerprint_file": absolute} if absolute is not None else {}
    return Finding(
        FindingKind.VULNERABILITY,
        "PYSEC-2099-1",
        "salt",
        Severity.HIGH,
        asset,
        component=component,
        evidence=evidence,
    )


def save(store: Store, asset: Asset, *found: Finding) -> list[Finding]:
    save_assessment(store, Assessment(target=asset.name, asset=asset, started=utcnow(), findings=list(found)))
    return list(found)


def test_the_host_a_single_file_and_an_archive_member_are_places_above_a_file(store: Store) -> None:
    member = "/srv/mail.zip!attach/e.exe"
    olds = [
        *save(store, HOST, sample(HOST, "srv/mail.zip!attach/e.exe")),
        *save(store, LOCKFILE, pin(LOCKFILE, "requirements.txt")),
    ]
    for old in olds:
        assert set_status(store, "default", old_formula(old), TriageStatus.FALSE_POSITIVE)

    found = save(
        store,
        SRV,
        sample(SRV, "mail.zip!attach/e.exe", member),
        pin(SRV, "app/requirements.txt", "/srv/app/requirements.txt"),
    )

    assert [f.status for f in found] == [TriageStatus.FALSE_POSITIVE] * 2  # before: open, beside the old
    with store.connect() as conn:
        stored = sorted(conn.execute(select(findings.c.fingerprint, findings.c.asset_id)).all())
    assert sorted(f.fingerprint for f in found) == [fp for fp, _asset in stored]


def test_a_save_looks_old_rows_up_in_the_indexes(store: Store) -> None:
    """20,000 other findings stored: the look-ups of a save of 300 new findings never scan a table."""
    save(store, SRV, sample(SRV, "seed"))
    now = utcnow()
    other = {"kind": "malware", "title": "t", "severity": "high", "evidence": {}, "first_seen": now}
    rows = [
        {**other, "tenant": "default", "fingerprint": f"{n:064x}", "asset_id": 1, "rule_id": f"R{n}"}
        for n in range(20_000)
    ]
    with store.begin() as conn:
        conn.execute(insert(findings), [{**row, "last_seen": now} for row in rows])
        conn.execute(text("ANALYZE"))
    selects: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        save(store, SRV, *(sample(SRV, f"f{n}", f"/srv/f{n}") for n in range(300)))
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)

    explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    lookups = [(s, p) for s, p in selects if "FROM assets" in s or "FROM findings" in s]
    # The new fingerprints and the old ones (300 of each: one chunk), the stored assets above the files.
    assert sum("FROM findings" in s for s, _p in lookups) == 2
    assert any("FROM assets" in s and " IN " in s for s, _p in lookups)
    with store.connect() as conn:
        if store.dialect != "sqlite":
            # The assets table holds one row, which PostgreSQL rightly reads whole: ask whether an index
            # can serve the look-up, as it must on a store with thousands of assets.
            conn.execute(text("SET enable_seqscan = off"))
        for statement, parameters in lookups:
            plan = "\n".join(str(row[-1]) for row in conn.exec_driver_sql(explain + statement, parameters))
            assert "Seq Scan" not in plan and "SCAN findings" not in plan and "SCAN assets" not in plan, plan


def test_incidents_and_alert_states_follow_a_re_keyed_finding(store: Store) -> None:
    """An incident and an alert delivered about the old row name it by fingerprint: after the re-key
    they name the new one, so the finding is not added to its incident again nor alerted about again."""
    old = save(store, HOST, sample(HOST, "srv/dropper.bin"))[0]
    old_fp = old_formula(old)
    now = utcnow()
    entry = {"fingerprint": old_fp, "title": "EICAR", "time": now.isoformat()}
    with store.begin() as conn:
        conn.execute(
            insert(situation_incidents).values(
                tenant="default",
                key="INC-000000000001",
                title="dropper",
                severity="high",
                status="open",
                finding_fingerprints=[old_fp, "f" * 64],
                timeline=[entry, {"fingerprint": "f" * 64}],
                updated=now,
            )
        )
        for subject in (f"finding:{old_fp}", "finding:" + "f" * 64):
            conn.execute(
                insert(situation_alert_state).values(
                    tenant="default", rule="malware", subject=subject, state="high", delivered_at=now
                )
            )

    new = save(store, SRV, sample(SRV, "dropper.bin", "/srv/dropper.bin"))[0]

    with store.connect() as conn:
        incident = conn.execute(select(situation_incidents)).one()
        subjects = set(conn.execute(select(situation_alert_state.c.subject)).scalars())
    assert incident.finding_fingerprints == [new.fingerprint, "f" * 64]
    assert [e["fingerprint"] for e in incident.timeline] == [new.fingerprint, "f" * 64]
    assert incident.timeline[0]["title"] == "EICAR"
    assert subjects == {f"finding:{new.fingerprint}", "finding:" + "f" * 64}
