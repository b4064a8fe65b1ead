"""`tianmu intel import|match|lookup`, `tianmu assess` with a feed, and ATT&CK in the reports."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from intel_helpers import FIXTURES
from typer.testing import CliRunner

from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.core.models import Assessment, Asset, AssetKind, Finding, FindingKind, Severity
from tianmu.intel.kb import import_feed
from tianmu.reports.html import view_model
from tianmu.road.assess import AssessOptions, assess
from tianmu.store.attack import annotate_findings
from tianmu.store.database import Store

DEMO = Path(__file__).resolve().parents[2] / "demo"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(out_console, "width", 200)
    return CliRunner()


def test_cli_import_lookup_and_match(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["intel", "import", str(FIXTURES / "iocs.csv"), "--source", "partner-csv", "--json",
         "--column", "value=indicator", "--column", "type=kind", "--column", "confidence=conf",
         "--column", "valid_until=expires", "--column", "malware=family", "--column", "technique=ttp"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    assert (report["source"], report["record_count"]) == ("partner-csv", 4)
    assert [e.split(": ")[0] for e in report["errors"]] == [
        f"{FIXTURES / 'iocs.csv'}:5",
        f"{FIXTURES / 'iocs.csv'}:7",
    ]

    found = runner.invoke(app, ["intel", "lookup", "hxxps://www.c2.NIGHTOWL[.]example/x", "--json"], env=env)
    assert found.exit_code == 0, found.output
    [record] = json.loads(found.stdout)
    assert record["value"] == "c2.nightowl.example" and record["malware"] == ["NightOwl RAT"]
    assert runner.invoke(app, ["intel", "lookup", "example.org"], env=env).exit_code == 1

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "proxy.log").write_text(
        "2026-11-20T03:00:00Z allow 10.0.0.5 -> www.example.org\n"
        "2026-11-20T03:00:01Z allow 10.0.0.5 -> 203.0.113.66:443 CONNECT\n",
        encoding="utf-8",
    )
    matched = runner.invoke(app, ["intel", "match", str(logs), "--json"], env=env)
    assert matched.exit_code == 1, matched.output
    [hit] = json.loads(matched.stdout)
    assert hit["indicator"] == {"type": "ip", "value": "203.0.113.66"}
    assert (hit["path"], hit["line"], hit["sources"]) == ("proxy.log", 2, ["partner-csv"])


def test_cli_errors_are_one_line_and_exit_2(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["intel", "match", str(tmp_path)], env=env)
    assert result.exit_code == 2 and "no threat-intelligence feed imported" in result.output
    result = runner.invoke(app, ["intel", "import", str(tmp_path / "missing.txt")], env=env)
    assert result.exit_code == 2 and "no such file" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    result = runner.invoke(app, ["intel", "import", str(bad), "--column", "valueindicator"], env=env)
    assert result.exit_code == 2 and "FIELD=HEADER" in result.output


def test_assess_demo_target_uses_the_intel_base(sqlite_store: Store, tmp_path: Path) -> None:
    home = tmp_path / "home"
    import_feed(sqlite_store, DEMO / "kb" / "intel", home=home)
    target = tmp_path / "target"
    shutil.copytree(DEMO / "target" / "logs", target / "logs")
    result = assess(sqlite_store, target, AssessOptions(home=home, engines=("intel",)))
    found = {(f.evidence["indicator"]["value"], f.evidence["path"]): f for f in result.findings}
    assert set(found) == {
        ("192.0.2.77", "logs/eve.json"),
        ("198.51.100.23", "logs/access.log"),
        ("198.51.100.23", "logs/eve.json"),
        ("203.0.113.45", "logs/auth.log"),
    }
    c2 = found[("192.0.2.77", "logs/eve.json")]
    assert c2.severity == Severity.HIGH and c2.techniques == ("T1071.001",)
    assert c2.evidence["field"] == "dest_ip" and c2.evidence["time"].startswith("2026-11-20T03:12:30")
    brute = found[("203.0.113.45", "logs/auth.log")]
    assert set(brute.data["sources"]) == {"stix:northwind-partner-cert", "list:shared-blocklist"}
    assert brute.evidence["sightings"] > 20


def test_assess_without_a_feed_says_so(sqlite_store: Store, tmp_path: Path) -> None:
    (tmp_path / "app.log").write_text("nothing here\n", encoding="utf-8")
    result = assess(
        sqlite_store, tmp_path, AssessOptions(home=tmp_path / "home", engines=("intel",), save=False)
    )
    assert result.findings == []
    assert any(note.startswith("intel: no threat-intelligence feed") for note in result.notes)


def test_reports_name_techniques_and_group_by_tactic(
    sqlite_store: Store, shared_data: Path, tmp_path: Path
) -> None:
    import_feed(sqlite_store, shared_data / "attack" / "enterprise-attack.json.gz", home=tmp_path)
    asset = Asset(name="/srv", kind=AssetKind.DIRECTORY)
    high, medium, low = Severity.HIGH, Severity.MEDIUM, Severity.LOW
    findings = [
        Finding(FindingKind.DETECTION, "r1", "Encoded PowerShell", high, asset, techniques=("T1059.001",)),
        Finding(FindingKind.INTEL, "r2", "Phishing", medium, asset, techniques=("T1566.002", "T1071.001")),
        Finding(FindingKind.MALWARE, "r3", "No technique", low, asset),
    ]
    annotate_findings(sqlite_store, findings)
    assert findings[0].data["attack"][0]["full_name"] == "Command and Scripting Interpreter: PowerShell"
    assert "attack" not in findings[2].data
    model = view_model(Assessment(target="/srv", asset=asset, started=datetime.now(UTC), findings=findings))
    assert [t["name"] for t in model["tactics"]] == ["Initial Access", "Execution", "Command and Control"]
    row = model["tactics"][1]["rows"][0]
    assert row["techniques"] == ["T1059.001 Command and Scripting Interpreter: PowerShell (Execution)"]
    bare = view_model(
        Assessment(target="/srv", asset=asset, started=datetime.now(UTC), findings=[findings[2]])
    )
    assert bare["tactics"] == []


def test_assess_sweeps_file_names(sqlite_store: Store, shared_data: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    import_feed(sqlite_store, shared_data / "intel" / "signature-base-iocs", home=home)
    target = tmp_path / "image"
    (target / "Windows" / "System32").mkdir(parents=True)
    (target / "Windows" / "System32" / "winhttpc.dll").write_bytes(b"MZ")
    (target / "Windows" / "System32" / "kernel32.dll").write_bytes(b"MZ")
    result = assess(sqlite_store, target, AssessOptions(home=home, engines=("intel",), save=False))
    [finding] = result.findings
    assert finding.evidence["path"] == "Windows/System32/winhttpc.dll"
    # The place in the fingerprint is the file on the host, whichever folder above it is assessed.
    place = f"{target.resolve()}/Windows/System32/winhttpc.dll"
    assert finding.evidence["fingerprint_extra"] == rf"filename:ystem32\\winhttpc\.dll@{place}"
    assert finding.evidence["fingerprint_file"] == place
