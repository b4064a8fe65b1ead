"""A lockfile's advisories are one finding each whichever directory above the lockfile was assessed.

Before: `assess top` then `assess top/sub` stored every advisory of `top/sub/requirements.txt` twice,
keyed on two assets (`top` with path `sub/requirements.txt`, `top/sub` with `requirements.txt`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tianmu.core.models import FindingKind
from tianmu.road.assess import AssessOptions, assess
from tianmu.store.database import Store
from tianmu.store.repository import list_findings
from tianmu.vulns.kb import import_path

PINS = {"salt": ("3000.1", "3000.2"), "urllib3": ("1.24.1", "1.24.2")}


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store("sqlite:///" + str(tmp_path / "t.db"))
    osv = tmp_path / "osv" / "PyPI"
    osv.mkdir(parents=True)
    for index, (name, (_pinned, fixed)) in enumerate(PINS.items(), start=1):
        events = [{"introduced": "0"}, {"fixed": fixed}]
        record = {
            "id": f"PYSEC-2099-{index}",
            "modified": "2024-01-01T00:00:00Z",
            "summary": f"A flaw in {name}",
            "affected": [
                {
                    "package": {"name": name, "ecosystem": "PyPI"},
                    "ranges": [{"type": "ECOSYSTEM", "events": events}],
                }
            ],
        }
        (osv / f"PYSEC-2099-{index}.json").write_text(json.dumps(record), encoding="utf-8")
    import_path(db, osv)
    yield db
    db.close()


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    pins = "".join(f"{name}=={pinned}\n" for name, (pinned, _fixed) in PINS.items())
    (top / "sub" / "requirements.txt").write_text(pins, encoding="utf-8")
    (top / "requirements.txt").write_text("salt==3000.1\n", encoding="utf-8")  # another file: its own finding
    return top


@pytest.mark.parametrize("order", ["parent first", "child first"])
def test_a_lockfile_finding_is_one_whichever_root_was_assessed(
    order: str, store: Store, tree: Path, tmp_path: Path
) -> None:
    options = AssessOptions(engines=("vulnerability",), home=tmp_path / "home")
    targets = [tree, tree / "sub"] if order == "parent first" else [tree / "sub", tree]
    results = [assess(store, target, options) for target in targets]
    parent = results[0] if order == "parent first" else results[1]
    child = results[1] if order == "parent first" else results[0]
    assert len(parent.findings) == 3 and len(child.findings) == 2
    stored = list_findings(store, "default", kinds=[FindingKind.VULNERABILITY])
    assert len(stored) == 3  # before: 5
    assert {f.fingerprint for f in child.findings} <= {f.fingerprint for f in parent.findings}
    # What is shown stays relative to the root each run was given.
    assert {str(f.component.location) for f in child.findings if f.component} == {
        "requirements.txt:1",
        "requirements.txt:2",
    }


def test_the_same_pin_in_two_files_stays_two_findings(store: Store, tree: Path, tmp_path: Path) -> None:
    result = assess(store, tree, AssessOptions(engines=("vulnerability",), home=tmp_path / "home"))
    salt = [f for f in result.findings if f.component is not None and f.component.name == "salt"]
    assert len(salt) == 2 and len({f.fingerprint for f in salt}) == 2
