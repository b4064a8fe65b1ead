"""`tianmu detect` and `tianmu intel match` end in the same step as `assess`: findings stored, incidents
and risk updated."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.situation import load_incidents, posture_history
from tianmu.store import Store
from tianmu.store.repository import list_findings

REPO = Path(__file__).resolve().parents[2]
DEMO_LOGS = REPO / "demo" / "target" / "logs"


def _env(home: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(home), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": "default"}


def test_detect_stores_its_detections_and_updates_the_situation(tmp_path: Path) -> None:
    home = tmp_path / "home"
    logs = shutil.copytree(DEMO_LOGS, tmp_path / "logs")
    result = CliRunner().invoke(app, ["detect", str(logs), "--fail-on", "none"], env=_env(home))
    assert result.exit_code == 0, result.output
    store = Store(f"sqlite:///{home / 'tianmu.db'}")
    try:
        stored = list_findings(store, "default")
        assert {f.finding.kind.value for f in stored} == {"detection"} and len(stored) >= 20
        incidents = load_incidents(store, "default")
        # The SSH brute force that ends in a login is one story; its stage is on the kill chain.
        assert incidents and any("203.0.113.45" in i.entities.get("ip", []) for i in incidents)
        points = posture_history(store, "default")
        assert len(points) == 1 and points[0].score > 0
    finally:
        store.close()
    # Run again: the same problems are the same findings, and a second posture point is recorded.
    again = CliRunner().invoke(app, ["detect", str(logs), "--fail-on", "none"], env=_env(home))
    assert again.exit_code == 0, again.output
    store = Store(f"sqlite:///{home / 'tianmu.db'}")
    try:
        assert len(list_findings(store, "default")) == len(stored)
        assert len(posture_history(store, "default")) == 2
    finally:
        store.close()


def test_intel_match_stores_its_hits_and_updates_the_situation(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(home)
    for feed in ("northwind-partner-cert.json", "shared-blocklist.txt"):
        imported = CliRunner().invoke(
            app, ["intel", "import", str(REPO / "demo" / "kb" / "intel" / feed)], env=env
        )
        assert imported.exit_code == 0, imported.output
    logs = shutil.copytree(DEMO_LOGS, tmp_path / "logs")
    result = CliRunner().invoke(app, ["intel", "match", str(logs), "--json"], env=env)
    assert result.exit_code == 1, result.output  # indicators seen
    store = Store(f"sqlite:///{home / 'tianmu.db'}")
    try:
        stored = list_findings(store, "default")
        assert {f.finding.kind.value for f in stored} == {"intel"}
        assert {f.finding.evidence["path"] for f in stored} >= {"auth.log", "access.log", "eve.json"}
        assert load_incidents(store, "default")
        assert len(posture_history(store, "default")) == 1
    finally:
        store.close()
