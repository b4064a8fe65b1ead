"""The `tianmu` command end to end: knowledge base, assess, outputs, exit codes, errors, triage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.console import out_console
from tianmu.cli.main import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cli"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # Rich fixes the width of a non-terminal console when it is created; tables need room for ids.
    monkeypatch.setattr(out_console, "width", 200)
    return CliRunner()


@pytest.fixture
def with_kb(runner: CliRunner, env: dict[str, str]) -> dict[str, str]:
    result = runner.invoke(app, ["kb", "import", str(FIXTURES / "kb")], env=env)
    assert result.exit_code == 0, result.output
    return env


@pytest.fixture
def target(tmp_path: Path) -> Path:
    dest = tmp_path / "target"
    shutil.copytree(FIXTURES / "target", dest)
    return dest


def test_kb_status_reports_what_was_imported(runner: CliRunner, with_kb: dict[str, str]) -> None:
    result = runner.invoke(app, ["kb", "status", "--json"], env=with_kb)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert sum(row["record_count"] for row in rows) == 2
    assert all(len(row["digest"]) >= 32 for row in rows)


def test_assess_json_reports_exact_findings_with_evidence(
    runner: CliRunner, with_kb: dict[str, str], target: Path
) -> None:
    result = runner.invoke(app, ["assess", str(target), "--format", "json"], env=with_kb)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    by_id = {f["id"]: f for f in report["findings"]}
    assert set(by_id) == {"TIANMU-TEST-2021-0001", "TIANMU-TEST-2020-0002"}
    django = by_id["TIANMU-TEST-2021-0001"]
    assert django["kind"] == "vulnerability"
    assert django["aliases"] == ["CVE-2099-0001"]
    assert django["severity"] == "high"
    assert django["fixed_versions"] == ["3.2.4"]
    assert django["kev"] is False and django["epss"] is None
    assert django["component"]["version"] == "3.2.1"
    assert django["component"]["purl"] == "pkg:pypi/django@3.2.1"
    assert django["component"]["location"] == {"path": "app/requirements.txt", "line": 2}
    assert by_id["TIANMU-TEST-2020-0002"]["component"]["location"]["path"] == "web/package-lock.json"
    assert [u["name"] for u in report["unresolved"]] == ["gunicorn"]


def test_fail_on_threshold_sets_the_exit_code(
    runner: CliRunner, with_kb: dict[str, str], target: Path
) -> None:
    assert runner.invoke(app, ["assess", str(target), "--fail-on", "critical"], env=with_kb).exit_code == 0
    assert runner.invoke(app, ["assess", str(target), "--fail-on", "high"], env=with_kb).exit_code == 1
    assert runner.invoke(app, ["assess", str(target), "--fail-on", "none"], env=with_kb).exit_code == 0


def test_table_summary_names_packages_and_fixes(
    runner: CliRunner, with_kb: dict[str, str], target: Path
) -> None:
    result = runner.invoke(app, ["assess", str(target)], env=with_kb)
    assert "Tianmu situation summary" in result.stdout
    assert "TIANMU-TEST-2021-0001" in result.stdout and "3.2.4" in result.stdout
    assert "Findings: 2" in result.stdout


@pytest.mark.parametrize(
    ("fmt", "marker"), [("sarif", '"2.1.0"'), ("cyclonedx", "CycloneDX"), ("html", "<html")]
)
def test_file_reports_are_written(
    runner: CliRunner, with_kb: dict[str, str], target: Path, tmp_path: Path, fmt: str, marker: str
) -> None:
    out = tmp_path / f"report.{fmt}"
    result = runner.invoke(
        app, ["assess", str(target), "-f", fmt, "-o", str(out), "--fail-on", "none"], env=with_kb
    )
    assert result.exit_code == 0, result.output
    assert marker in out.read_text(encoding="utf-8")
    assert "TIANMU-TEST-2020-0002" in out.read_text(encoding="utf-8")


def test_findings_are_stored_once_and_triage_survives_a_rescan(
    runner: CliRunner, with_kb: dict[str, str], target: Path
) -> None:
    runner.invoke(app, ["assess", str(target)], env=with_kb)
    listed = json.loads(runner.invoke(app, ["findings", "list", "--json"], env=with_kb).stdout)
    assert len(listed) == 2
    lodash = next(f for f in listed if f["id"] == "TIANMU-TEST-2020-0002")
    triaged = runner.invoke(
        app, ["findings", "triage", lodash["fingerprint"][:10], "acknowledged"], env=with_kb
    )
    assert triaged.exit_code == 0, triaged.output

    rerun = runner.invoke(app, ["assess", str(target), "--format", "json", "--fail-on", "none"], env=with_kb)
    statuses = {f["id"]: f["status"] for f in json.loads(rerun.stdout)["findings"]}
    assert statuses == {"TIANMU-TEST-2021-0001": "open", "TIANMU-TEST-2020-0002": "acknowledged"}
    assert len(json.loads(runner.invoke(app, ["findings", "list", "--json"], env=with_kb).stdout)) == 2


def test_inventory_json_lists_components(runner: CliRunner, env: dict[str, str], target: Path) -> None:
    result = runner.invoke(app, ["inventory", str(target), "--json"], env=env)
    assert result.exit_code == 0, result.output
    names = sorted(c["name"] for c in json.loads(result.stdout)["components"])
    assert names == ["Django", "lodash", "requests"]


def test_broken_file_is_reported_and_the_rest_still_assessed(
    runner: CliRunner, with_kb: dict[str, str], target: Path
) -> None:
    (target / "app" / "poetry.lock").write_text('[[package]]\nname = "x"\nversion = \n', encoding="utf-8")
    result = runner.invoke(app, ["assess", str(target), "--format", "json"], env=with_kb)
    assert result.exit_code == 1
    assert "app/poetry.lock:3" in result.stderr
    report = json.loads(result.stdout)
    assert len(report["findings"]) == 2
    assert any("poetry.lock" in e for e in report["errors"])


def test_nothing_readable_exits_2_with_file_and_line(
    runner: CliRunner, with_kb: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "package-lock.json").write_text('{"lockfileVersion": 3,\n "packages": {\n', encoding="utf-8")
    result = runner.invoke(app, ["assess", str(broken)], env=with_kb)
    assert result.exit_code == 2
    assert "package-lock.json:" in result.stderr
    assert "could be read" in result.stderr
    assert "Traceback" not in result.output


def test_missing_path_and_bad_options_exit_2(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    missing = runner.invoke(app, ["assess", str(tmp_path / "nope")], env=env)
    assert missing.exit_code == 2
    assert "no such file or directory" in missing.stderr
    assert runner.invoke(app, ["assess", str(tmp_path), "--format", "pdf"], env=env).exit_code == 2
    assert runner.invoke(app, ["kb", "import", str(tmp_path / "nope")], env=env).exit_code == 2


def test_console_script_never_prints_a_traceback(tmp_path: Path) -> None:
    """Through the real entry point, as a user runs it."""
    bad_home = tmp_path / "file"
    bad_home.write_text("")
    proc = subprocess.run(
        [sys.executable, "-c", "from tianmu.cli.main import run; run()", "assess", str(tmp_path)],
        env={"TIANMU_HOME": str(bad_home / "sub"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "cannot create the data directory" in proc.stderr
    assert "Traceback" not in proc.stderr
