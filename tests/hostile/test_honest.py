"""Honest output: what was not checked is said, instead of reading as "nothing found"."""

from __future__ import annotations

import json
from pathlib import Path

from tianmu.road.assess import AssessOptions, assess
from tianmu.road.knowledge import import_any
from tianmu.store import Store
from tianmu.store.knowledge import KbContext

_STATUS = "".join(
    f"Package: pkg{index}\nStatus: install ok installed\nVersion: 1.{index}\nArchitecture: amd64\n\n"
    for index in range(5)
)


def _osv(tmp_path: Path) -> Path:
    folder = tmp_path / "osv"
    folder.mkdir()
    record = {
        "id": "PYSEC-0000-1",
        "modified": "2024-01-01T00:00:00Z",
        "published": "2024-01-01T00:00:00Z",
        "summary": "a flaw",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "requests"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
            }
        ],
    }
    (folder / "PYSEC-0000-1.json").write_text(json.dumps(record))
    return folder


def test_an_ecosystem_without_advisories_is_reported_as_not_checked(
    sqlite_store: Store, tmp_path: Path
) -> None:
    import_any(KbContext(sqlite_store, tmp_path / "home"), _osv(tmp_path))
    target = tmp_path / "target"
    (target / "var" / "lib" / "dpkg").mkdir(parents=True)
    (target / "var" / "lib" / "dpkg" / "status").write_text(_STATUS)
    (target / "requirements.txt").write_text("requests==2.19.0\n")
    result = assess(sqlite_store, target, AssessOptions(engines=("vulnerability",), save=False))
    assert [f.rule_id for f in result.findings] == ["PYSEC-0000-1"]  # PyPI was checked
    assert any(
        note.startswith("vulnerability: Debian: 5 components not checked — no osv:Debian imported")
        for note in result.notes
    ), result.notes
    assert not any("PyPI" in note for note in result.notes)
