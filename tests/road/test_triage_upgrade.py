"""Triage survives the change of finding fingerprints (issue 21), on SQLite and on PostgreSQL.

Findings used to be keyed on the assessed root's asset and the file's path relative to it; they are now
keyed on the file's absolute place. Before `tianmu.store.legacy`, the first assessment after the
upgrade stored every such finding again under its new fingerprint: the old row stayed open beside it
and its triage (a false positive, an acknowledgement) was lost.

The old rows are made here as the old code made them: the road without `key_on_files` (it did not
exist), whose findings the current formula keys exactly as the old one did; each stored fingerprint is
checked against the old formula, copied below.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tianmu.core.models import (
    Assessment,
    Asset,
    AssetKind,
    Finding,
    FindingKind,
    Severity,
    TriageStatus,
    utcnow,
)
from tianmu.road import assess as assess_module
from tianmu.road.assess import AssessOptions, assess
from tianmu.road.places import key_on_files
from tianmu.road.targets import asset_for_path
from tianmu.store.database import Store
from tianmu.store.repository import list_findings, save_assessment, set_status
from tianmu.store.schema import assets, findings
from tianmu.vulns.kb import import_path

PINS = {"salt": ("3000.1", "3000.2"), "urllib3": ("1.24.1", "1.24.2")}


def old_formula(tenant: str, asset: list[str], kind: str, rule: str, component: Any, extra: Any) -> str:
    """`finding_fingerprint` before issue 21 (git show 309a603~1:src/tianmu/core/models.py), over
    what a stored row holds."""
    key: dict[str, Any] = {"tenant": tenant, "asset": asset, "kind": kind, "rule": rule}
    if component is not None:
        key["component"] = [
            component["ecosystem"],
            component["name"],
            component["version"],
            component["path"],
        ]
    if extra is not None:
        key["extra"] = extra
    blob = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def rows(store: Store) -> list[Any]:
    query = (
        select(findings, assets.c.kind.label("asset_kind"), assets.c.name.label("asset_name"))
        .join(assets, assets.c.id == findings.c.asset_id)
        .order_by(findings.c.id)
    )
    with store.connect() as conn:
        return list(conn.execute(query))


def assert_old_scheme(store: Store) -> None:
    for row in rows(store):
        extra = row.evidence.get("fingerprint_extra")
        asset = [row.asset_kind, row.asset_name]
        assert row.fingerprint == old_formula(row.tenant, asset, row.kind, row.rule_id, row.component, extra)


def by_place(store: Store) -> dict[tuple[str, str, str], Any]:
    """Vulnerability rows by (asset, package, component path)."""
    return {(r.asset_name, r.component["name"], r.component["path"]): r for r in rows(store)}


@pytest.fixture()
def kb_store(store: Store, tmp_path: Path) -> Store:
    osv = tmp_path / "osv" / "PyPI"
    osv.mkdir(parents=True)
    for index, (name, (_pinned, fixed)) in enumerate(PINS.items(), start=1):
        record = {
            "id": f"PYSEC-2099-{index}",
            "modified": "2024-01-01T00:00:00Z",
            "summary": f"A flaw in {name}",
            "affected": [
                {
                    "package": {"name": name, "ecosystem": "PyPI"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                }
            ],
        }
        (osv / f"PYSEC-2099-{index}.json").write_text(json.dumps(record), encoding="utf-8")
    import_path(store, osv)
    return store


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    pins = "".join(f"{name}=={pinned}\n" for name, (pinned, _fixed) in PINS.items())
    (top / "sub" / "requirements.txt").write_text(pins, encoding="utf-8")
    (top / "requirements.txt").write_text("salt==3000.1\n", encoding="utf-8")
    return top


def test_vulnerability_triage_is_kept_whichever_root_is_assessed_after_the_upgrade(
    kb_store: Store, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = kb_store
    options = AssessOptions(engines=("vulnerability",), home=tmp_path / "home")
    top, sub = str(tree.resolve()), str((tree / "sub").resolve())
    with monkeypatch.context() as old_road:
        old_road.setattr(assess_module, "key_on_files", lambda findings, root: None)
        assess(store, tree, options)
        assess(store, tree / "sub", options)
    assert_old_scheme(store)
    before = by_place(store)
    assert len(before) == 5  # the old code's duplicates: sub's pins under top and under sub
    triage = {
        (top, "salt", "sub/requirements.txt"): TriageStatus.FALSE_POSITIVE,
        (top, "salt", "requirements.txt"): TriageStatus.ACKNOWLEDGED,
        (sub, "urllib3", "requirements.txt"): TriageStatus.ACKNOWLEDGED,
    }
    for place, status in triage.items():
        assert set_status(store, "default", before[place].fingerprint, status)

    child = assess(store, tree / "sub", options)  # the current road

    assert {f.component.name: f.status for f in child.findings if f.component} == {
        "salt": TriageStatus.FALSE_POSITIVE,  # before: open, under a new fingerprint
        "urllib3": TriageStatus.ACKNOWLEDGED,
    }
    after = rows(store)
    assert len(after) == 3  # before: 7 (the 5 old rows and 2 new ones)
    fingerprints = {f.fingerprint for f in child.findings}
    kept = {r.id for r in after if r.fingerprint in fingerprints}
    # The triaged rows were re-keyed in place (their ids and the asset that first found them stay);
    # the open duplicates of them are gone.
    assert kept == {
        before[(top, "salt", "sub/requirements.txt")].id,
        before[(sub, "urllib3", "requirements.txt")].id,
    }
    assert all(r.status != TriageStatus.OPEN.value for r in after)
    oldest = min(
        before[(top, "salt", "sub/requirements.txt")].first_seen,
        before[(sub, "salt", "requirements.txt")].first_seen,
    )
    salt = next(f for f in child.findings if f.component and f.component.name == "salt")
    assert salt.first_seen == oldest

    parent = assess(store, tree, options)
    assert len(parent.findings) == 3
    assert all(f.status is not TriageStatus.OPEN for f in parent.findings)
    assert len(rows(store)) == 3
    assert not list_findings(store, "default", statuses=[TriageStatus.OPEN])


def record_findings(asset: Asset, folder: str, *, correlation: bool = True) -> list[Finding]:
    """A detection of a line, its correlation, an indicator seen in a line and a sample, as the engines
    write them for a root whose logs are in `folder` (relative to the root, "" for the root itself)."""
    auth, sample = f"{folder}auth.log", f"{folder}dropper.bin"

    def finding(
        kind: FindingKind, rule: str, evidence: dict[str, Any], data: dict[str, Any] | None = None
    ) -> Finding:
        return Finding(
            kind=kind,
            rule_id=rule,
            title=rule,
            severity=Severity.HIGH,
            asset=asset,
            evidence=evidence,
            data=data or {},
        )

    events = {"correlation": {"events": [{"path": auth, "line": 3}, {"path": auth, "line": 9}]}}
    found = [
        finding(
            FindingKind.DETECTION,
            "sigma-ssh",
            {"path": auth, "line": 3, "fingerprint_extra": {"path": auth, "record": 3}},
        ),
        finding(
            FindingKind.DETECTION,
            "sigma-ssh",
            {"path": auth, "line": 9, "fingerprint_extra": {"path": auth, "record": 9}},
        ),
        finding(
            FindingKind.DETECTION,
            "brute-force",
            {"path": auth, "line": 9, "fingerprint_extra": {"group": "203.0.113.7"}},
            events,
        ),
        finding(
            FindingKind.INTEL,
            "ioc-ip",
            {"path": auth, "line": 3, "fingerprint_extra": f"ip:203.0.113.7@{auth}"},
        ),
        finding(FindingKind.MALWARE, "EICAR", {"path": sample, "fingerprint_extra": sample}),
    ]
    return found if correlation else [f for f in found if f.rule_id != "brute-force"]


def save(store: Store, asset: Asset, found: list[Finding]) -> Assessment:
    assessment = Assessment(target=asset.name, asset=asset, started=utcnow(), findings=found)
    save_assessment(store, assessment)
    return assessment


STATUSES = [
    TriageStatus.FALSE_POSITIVE,  # the line at 3
    TriageStatus.OPEN,  # the line at 9
    TriageStatus.ACKNOWLEDGED,  # the correlation
    TriageStatus.FALSE_POSITIVE,  # the indicator
    TriageStatus.RESOLVED,  # the sample
]


@pytest.mark.parametrize("then", ["the same root", "the folder below"])
def test_record_triage_is_kept_after_the_upgrade(then: str, store: Store, tmp_path: Path) -> None:
    root = tmp_path / "host"
    logs = root / "var" / "log"
    logs.mkdir(parents=True)
    for name in ("auth.log", "dropper.bin"):
        (logs / name).write_text("x\n", encoding="utf-8")
    asset = asset_for_path(root, "default")
    old = save(store, asset, record_findings(asset, "var/log/"))  # the old road: no key_on_files
    assert_old_scheme(store)
    for finding, status in zip(old.findings, STATUSES, strict=True):
        assert set_status(store, "default", finding.fingerprint, status)
    ids = [r.id for r in rows(store)]

    target = root if then == "the same root" else logs
    now = asset_for_path(target, "default")
    again = record_findings(now, "var/log/" if then == "the same root" else "")
    key_on_files(again, target)  # the current road
    assert not {f.fingerprint for f in again} & {f.fingerprint for f in old.findings}
    save(store, now, again)

    after = rows(store)
    reopened = TriageStatus.OPEN  # the resolved sample came back
    if then == "the same root":
        assert [f.status for f in again] == [*STATUSES[:4], reopened]
        assert [r.id for r in after] == ids  # each old row re-keyed in place
    else:
        # The line, the indicator and the sample are the same records of the same files; a correlation
        # under another root may be another sum of events: a finding of its own (its old row stays).
        assert [f.status for f in again] == [*STATUSES[:2], TriageStatus.OPEN, STATUSES[3], reopened]
        assert [r.id for r in after][:5] == ids and len(after) == 6
    assert {r.fingerprint for r in after} >= {f.fingerprint for f in again}


def test_an_old_row_of_another_file_or_tenant_is_not_taken(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    asset = asset_for_path(root, "default")
    other = Asset(name=asset.name, kind=AssetKind.DIRECTORY, tenant="other")
    for owner, folder in ((asset, "a/"), (other, "b/")):
        for finding in save(store, owner, record_findings(owner, folder, correlation=False)).findings:
            assert set_status(store, owner.tenant, finding.fingerprint, TriageStatus.FALSE_POSITIVE)

    elsewhere = record_findings(asset, "b/", correlation=False)  # the same rules in another folder's files
    key_on_files(elsewhere, root)
    save(store, asset, elsewhere)
    assert all(f.status is TriageStatus.OPEN for f in elsewhere)
    assert len(rows(store)) == 12
