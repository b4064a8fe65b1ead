"""The situation commands end to end: incidents, trace, evidence, risk, alerts; exit codes and errors."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.console import out_console
from tianmu.cli.main import app

from .conftest import HttpReceiver
from .scenario import ATTACKER, write_scenario_files


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(out_console, "width", 200)
    return CliRunner()


def _incidents(runner: CliRunner, env: dict[str, str]) -> list[dict[str, object]]:
    result = runner.invoke(app, ["incidents", "list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_incidents_correlate_list_show_assign_status(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["incidents", "correlate", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["created"]) == 3
    again = runner.invoke(app, ["incidents", "correlate", "--json"], env=env)
    assert json.loads(again.stdout) == {"created": [], "updated": []}
    rows = _incidents(runner, env)
    main = next(r for r in rows if r["stage"] == "persistence")
    assert main["title"] == "Persistence on web01 from 203.0.113.45" and main["severity"] == "critical"
    key = str(main["id"])
    shown = runner.invoke(app, ["incidents", "show", key[:9]], env=env)
    assert shown.exit_code == 0, shown.output
    assert "Initial Access → Persistence → Credential Access" in shown.stdout
    assert "var/log/auth.log:5" in shown.stdout
    assert runner.invoke(app, ["incidents", "assign", key, "li.wei"], env=env).exit_code == 0
    assert runner.invoke(app, ["incidents", "status", key, "acknowledged"], env=env).exit_code == 0
    main = next(r for r in _incidents(runner, env) if r["id"] == key)
    assert main["assignee"] == "li.wei" and main["status"] == "acknowledged"
    missing = runner.invoke(app, ["incidents", "show", "INC-ffffffff"], env=env)
    assert missing.exit_code == 2 and "no incident 'INC-ffffffff'" in missing.output


def test_trace_json_and_table(runner: CliRunner, env: dict[str, str]) -> None:
    runner.invoke(app, ["incidents", "correlate"], env=env)
    result = runner.invoke(app, ["trace", ATTACKER, "--json"], env=env)
    assert result.exit_code == 0, result.output
    story = json.loads(result.stdout)
    assert story["types"] == ["ip"] and story["counts"] == {"incident": 1, "finding": 3}
    table = runner.invoke(app, ["trace", "db01"], env=env)
    assert table.exit_code == 0 and "Credential Access on db01 from 192.0.2.77" in table.stdout
    bad = runner.invoke(app, ["trace", "x", "--type", "mac"], env=env)
    assert bad.exit_code == 2 and "unknown entity type" in bad.output


def test_evidence_export_and_verify(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    runner.invoke(app, ["incidents", "correlate"], env=env)
    key = next(str(r["id"]) for r in _incidents(runner, env) if r["stage"] == "persistence")
    root = tmp_path / "target"
    write_scenario_files(root)
    bundle = tmp_path / "bundle.zip"
    result = runner.invoke(app, ["evidence", "export", key, "-o", str(bundle), "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    assert "signed with SM2" in result.output
    keyfile = Path(env["TIANMU_HOME"]) / "keys" / "evidence-sm2.pub.pem"  # the public key verifies
    ok = runner.invoke(app, ["evidence", "verify", str(bundle), "--key", str(keyfile)], env=env)
    assert ok.exit_code == 0 and "verified" in ok.stdout
    data = bytearray(bundle.read_bytes())
    data[200] ^= 0xFF
    bundle.write_bytes(bytes(data))
    failed = runner.invoke(app, ["evidence", "verify", str(bundle), "--json"], env=env)
    assert failed.exit_code == 1 and json.loads(failed.stdout)["ok"] is False
    absent = runner.invoke(app, ["evidence", "verify", str(tmp_path / "nope.zip")], env=env)
    assert absent.exit_code == 2 and "nope.zip" in absent.output


def test_risk_with_insurance(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["risk", "--json", "--insurance"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # The stored assets carry criticality 4 and 5 and their tags, so the scores are the scenario's.
    assert [a["name"] for a in report["assets"]] == ["web01", "db01"]
    assert report["level"] == "critical" and report["assets"][1]["score"] == 63.0
    assert {c["category"] for c in report["insurance"]["categories"]} >= {"ransomware", "account-takeover"}
    table = runner.invoke(app, ["risk", "--insurance"], env=env)
    assert (
        table.exit_code == 0
        and "Expected exposure" in table.stdout
        and "yara:Linux_Trojan_Mirai" in table.stdout
    )


def test_alerts_test_and_run(
    runner: CliRunner, env: dict[str, str], tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    config = tmp_path / "alerts.toml"
    config.write_text(
        f'[channels.hook]\ntype = "webhook"\nurl = "{http_receiver.url}"\nsecret = "k"\n'
        '[[rules]]\nname = "crit"\non = ["incident"]\nmin_severity = "critical"\n'
    )
    result = runner.invoke(app, ["alerts", "test", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    headers, body = http_receiver.requests[0]
    expected = hmac.new(
        b"k", headers["x-tianmu-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["x-tianmu-signature"] == "sha256=" + expected and json.loads(body)["type"] == "test"
    runner.invoke(app, ["incidents", "correlate"], env=env)
    run = runner.invoke(app, ["alerts", "run", "--config", str(config), "--json"], env=env)
    assert run.exit_code == 0, run.output
    assert [r["state"] for r in json.loads(run.stdout)] == ["open|persistence|critical"]
    rerun = runner.invoke(app, ["alerts", "run", "--config", str(config), "--json"], env=env)
    assert json.loads(rerun.stdout) == []
    nothing = runner.invoke(app, ["alerts", "run"], env=env)
    assert nothing.exit_code == 2 and "alerts.toml: no alert configuration" in nothing.output
