"""At the terminal an advisory without a published severity reads `medium (unscored)`, the summary says
how many there are and why, and `tianmu findings list` says it too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.console import out_console
from tianmu.cli.main import app


def _env(tmp_path: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


def _record(vid: str, name: str, severity: list[dict[str, str]] | None) -> dict[str, object]:
    events = [{"introduced": "0"}, {"fixed": "9.0"}]
    record: dict[str, object] = {
        "id": vid,
        "modified": "2024-01-01T00:00:00Z",
        "summary": f"A flaw in {name}",
        "affected": [
            {
                "package": {"name": name, "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }
    if severity:
        record["severity"] = severity
    return record


def test_the_summary_and_tables_say_unscored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out_console, "width", 220)
    osv = tmp_path / "kb" / "PyPI"
    osv.mkdir(parents=True)
    medium = [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"}]
    for record in (
        _record("PYSEC-2099-1", "alpha", None),
        _record("PYSEC-2099-2", "beta", None),
        _record("PYSEC-2099-3", "gamma", medium),
    ):
        (osv / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")
    target = tmp_path / "app"
    target.mkdir()
    (target / "requirements.txt").write_text("alpha==1.0\nbeta==1.0\ngamma==1.0\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["kb", "import", str(osv)], env=_env(tmp_path)).exit_code == 0
    result = runner.invoke(app, ["assess", str(target), "--fail-on", "none"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    # Before: "Findings: 3 — 3 medium", every one of them printed as a plain "medium".
    assert "Findings: 3 — 3 medium (2 unscored)" in out
    assert (
        "vulnerability: 2 of 3 findings rest on advisories that publish no severity, shown as unscored: "
        "ranked by KEV (0) and EPSS (0) where known, else medium by default (2)"
    ) in " ".join(out.split())
    rows = {
        line.split("│")[2].strip(): line.split("│")[1].strip()
        for line in out.splitlines()
        if "PYSEC-2099" in line
    }
    assert rows == {
        "PYSEC-2099-1": "medium (unscored)",
        "PYSEC-2099-2": "medium (unscored)",
        "PYSEC-2099-3": "medium",
    }
    listed = runner.invoke(app, ["findings", "list"], env=_env(tmp_path))
    assert listed.exit_code == 0 and listed.stdout.count("medium (unscored)") == 2
