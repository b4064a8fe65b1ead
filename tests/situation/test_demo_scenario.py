"""The demo target end to end: its logs, files and inventory assessed by every engine, then correlated.

The story, as written in demo/target/logs and demo/target/files (expectations come from it, not from
running Tianmu):

- 03:05–03:07 a web scanner, 198.51.100.23 (on the demo block list), probes the shop: scanner user
  agents, SQL injection and path traversal in access.log, Suricata alerts in eve.json;
- 03:12–03:13 203.0.113.45 brute-forces SSH and gets in as `ubuntu` at 03:13:09 (auth.log line 24);
- 03:12:30 the web server 10.20.0.10 talks to 192.0.2.77, a NightOwl RAT command-and-control address;
- 03:13–03:16 `ubuntu` reads /etc/shadow with sudo, creates `sysupdate` in group sudo (03:14:02);
- 03:21 `deploy` fails sudo three times;
- in files/: a PHP web shell and an EICAR sample inside a zip inside a zip, dated when checked out.

All of it is on one asset (the demo target folder), so the log story is one incident; its furthest
tactic is command and control (the RAT beacon), and it went from reconnaissance through initial access
and persistence. The files, dated today, are days away from the logs: a second incident, persistence
(a web shell, T1505.003).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.core.config import Settings
from tianmu.situation import load_assets, load_incidents, open_findings, score_findings
from tianmu.store.database import open_store

DEMO = Path(__file__).resolve().parents[2] / "demo"


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, str]:
    if not (DEMO / "target" / "logs").is_dir():
        pytest.skip("demo target without logs")
    env = {
        "TIANMU_HOME": str(tmp_path_factory.mktemp("demo") / "home"),
        "TIANMU_DATABASE_URL": "",
        "TIANMU_TENANT": "",
    }
    runner = CliRunner()
    for source in (DEMO / "kb", shared_data / "attack" / "enterprise-attack.json.gz"):
        result = runner.invoke(app, ["kb", "import", str(source)], env=env)
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["assess", str(DEMO / "target"), "--format", "json"], env=env)
    assert result.exit_code == 1, result.output  # findings, as the demo intends
    return env


def test_demo_logs_form_one_incident_up_to_command_and_control(demo_home: dict[str, str]) -> None:
    with open_store(Settings.from_env(demo_home)) as store:
        incidents = load_incidents(store, "default")
    assert len(incidents) == 2
    story = next(i for i in incidents if "198.51.100.23" in i.sources)
    assert story.stage == "command-and-control" and story.severity.value == "critical"
    assert story.first_seen == datetime(2026, 11, 20, 3, 5, 39, 801224, tzinfo=UTC)
    assert story.last_seen == datetime(2026, 11, 20, 3, 21, 3, tzinfo=UTC)
    assert {"198.51.100.23", "203.0.113.45", "192.0.2.77"} <= set(story.sources)
    assert {
        "reconnaissance",
        "initial-access",
        "persistence",
        "credential-access",
        "command-and-control",
    } <= set(story.tactics)
    assert story.tactics[0] == "reconnaissance" and story.tactics[-1] == "command-and-control"
    assert "sysupdate" in story.entities["user"] and "ubuntu" in story.entities["user"]
    where = {
        (e["evidence"].get("path"), e["evidence"].get("line") or e["evidence"].get("record"))
        for e in story.timeline
    }
    assert ("logs/auth.log", 24) in where  # the successful login after the brute force
    assert all(path.startswith("logs/") for path, _ in where)
    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in story.timeline]
    assert times == sorted(times) and len(times) == len(story.finding_fingerprints)

    files = next(i for i in incidents if i is not story)
    assert files.stage == "persistence"
    kinds = sorted(e["kind"] for e in files.timeline)
    assert kinds == ["intel", "malware", "malware"]  # web shell, EICAR, and EICAR's hash on the block list
    assert all(e["evidence"]["path"].startswith("files/") for e in files.timeline)


def test_demo_risk_scores(demo_home: dict[str, str]) -> None:
    with open_store(Settings.from_env(demo_home)) as store:
        report = score_findings(
            open_findings(store, "default"),
            load_assets(store, "default"),
            now=datetime(2026, 11, 24, tzinfo=UTC),
        )
    by_title = {r.title: r for r in report.findings}
    # A critical Sigma rule on a plain folder (criticality 3, no exposure tag), observed activity:
    # 90 × 1.25 = 112.5 → 80 + 20 × (1 − e^(−32.5/40)) = 91.13.
    assert by_title["SSH Brute Force Followed By Successful Login"].score == pytest.approx(91.13, abs=0.01)
    # A medium rule: 45 × 1.25 = 56.25, under the soft ceiling.
    assert by_title["New Local User"].score == pytest.approx(56.25)
    assert report.level == "critical" and report.assets[0].level == "critical"
    assert report.drivers["kev"] >= 1 and report.drivers["activity"] >= 20
