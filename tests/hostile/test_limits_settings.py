"""The read, detection and SBOM limits come from the settings (`TIANMU_LIMIT_*`), for every job (issue 21).

Before, `ReadLimits` and `DetectLimits` were fixed at their defaults: an operator could not lower them.
Each test sets one limit low through the environment or the settings, feeds a log that crosses it, and
looks for the hit in what the job reports: `assess`, `detect` and a queued assess job alike.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.core.config import Settings
from tianmu.intel.kb import import_feed
from tianmu.jobs import InProcessRunner, submit_job
from tianmu.readers.limits import ReadLimits
from tianmu.road.engines import JobLimits
from tianmu.store import Store
from tianmu.store.schema import assessments

DEMO = Path(__file__).resolve().parents[2] / "demo"
_LONG = 50_000
"""A line over the lowered line limit and far under the default 1 MiB."""


def _logs(root: Path, count: int = 40) -> Path:
    """An auth.log of root shells through sudo (a starter rule matches each line) with one overlong
    line at line 4."""
    root.mkdir()
    lines = [
        f"Nov 20 03:{i // 60 % 60:02d}:{i % 60:02d} web01 sudo:   deploy : TTY=pts/2 ; PWD=/srv ; "
        "USER=root ; COMMAND=/bin/bash -i\n"
        for i in range(count)
    ]
    lines.insert(3, "Nov 20 03:00:00 web01 sshd[1]: " + "A" * _LONG + "\n")
    (root / "auth.log").write_text("".join(lines), encoding="utf-8")
    return root


def _env(home: Path, **limits: int) -> dict[str, str]:
    env = {"TIANMU_HOME": str(home), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": "default"}
    env.update({f"TIANMU_LIMIT_{name.upper()}": str(value) for name, value in limits.items()})
    return env


def test_the_settings_make_the_limits_and_the_defaults_stay() -> None:
    defaults = JobLimits.from_settings(Settings(home=Path("/nonexistent"), database_url="unused"))
    assert defaults == JobLimits()
    env = _env(Path("/nonexistent"), line_bytes=4096, decompressed_bytes=1 << 20, ratio=50)
    env |= _env(Path("/nonexistent"), findings_per_rule=7, sightings=99)
    limits = JobLimits.from_settings(Settings.from_env(env))
    assert limits.read == ReadLimits(max_line_bytes=4096, max_decompressed_bytes=1 << 20, max_ratio=50)
    assert (limits.detect.max_findings_per_rule, limits.detect.max_sightings) == (7, 99)


def test_assess_takes_the_line_and_findings_limits_from_the_environment(tmp_path: Path) -> None:
    logs = _logs(tmp_path / "logs")
    env = _env(tmp_path / "home", line_bytes=4096, findings_per_rule=5)
    result = CliRunner().invoke(app, ["assess", str(logs), "-f", "json", "--fail-on", "none"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert any("auth.log:4: line longer than 4096 bytes (skipped)" in e for e in report["errors"])
    assert any("the first 5 are findings (limit max_findings_per_rule)" in n for n in report["notes"])

    # Without the settings the same log is read whole and every match is a finding.
    plain = CliRunner().invoke(
        app, ["assess", str(logs), "-f", "json", "--fail-on", "none"], env=_env(tmp_path / "home2")
    )
    assert plain.exit_code == 0, plain.output
    unlimited = json.loads(plain.stdout)
    assert not any("line longer than" in e for e in unlimited["errors"])
    assert not any("max_findings_per_rule" in n for n in unlimited["notes"])


def test_detect_takes_the_limits_from_the_environment(tmp_path: Path) -> None:
    logs = _logs(tmp_path / "logs")
    env = _env(tmp_path / "home", line_bytes=4096, findings_per_rule=5)
    result = CliRunner().invoke(app, ["detect", str(logs), "--json", "--fail-on", "none"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert any("auth.log:4: line longer than 4096 bytes (skipped)" in e for e in report["errors"])
    assert any("the first 5 are findings (limit max_findings_per_rule)" in n for n in report["notes"])


def test_intel_match_takes_the_line_limit_from_the_environment(tmp_path: Path) -> None:
    logs = _logs(tmp_path / "logs")
    home = tmp_path / "home"
    env = _env(home, line_bytes=4096)
    home.mkdir()
    store = Store(f"sqlite:///{home / 'tianmu.db'}")
    try:
        import_feed(store, DEMO / "kb" / "intel", home=home)
    finally:
        store.close()
    result = CliRunner().invoke(app, ["intel", "match", str(logs), "--json"], env=env)
    assert result.exit_code in (0, 1), result.output
    assert "auth.log:4: line longer than 4096 bytes (skipped)" in result.output


def test_an_assess_job_takes_the_limits_from_the_runners_settings(
    sqlite_store: Store, tmp_path: Path
) -> None:
    logs = _logs(tmp_path / "logs")
    settings = Settings(home=tmp_path / "home", database_url="unused", limit_line_bytes=4096)
    runner = InProcessRunner(sqlite_store, settings, workers=1)
    job, _ = submit_job(sqlite_store, runner, "assess", {"path": str(logs), "engines": ["detection"]})
    assert runner.wait(job.id, 120).status == "done"
    runner.shutdown()
    with sqlite_store.connect() as conn:
        (errors,) = conn.execute(select(assessments.c.errors)).one()
    assert any("auth.log:4: line longer than 4096 bytes (skipped)" in e for e in errors)


def test_vulns_takes_the_sbom_component_limit_from_the_environment(tmp_path: Path) -> None:
    target = tmp_path / "app"
    target.mkdir()
    components = [
        {"type": "library", "name": f"pkg-{i}", "version": "1.0.0", "purl": f"pkg:npm/pkg-{i}@1.0.0"}
        for i in range(30)
    ]
    bom = {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components}
    (target / "bom.cdx.json").write_text(json.dumps(bom), encoding="utf-8")
    env = _env(tmp_path / "home", sbom_components=12)
    result = CliRunner().invoke(app, ["vulns", str(target), "--json", "--fail-on", "none"], env=env)
    report = json.loads(result.stdout)
    assert len(report["components"]) == 12, result.output
    assert any("30 components, only the first 12 read" in e for e in report["errors"]), report["errors"]
    plain = CliRunner().invoke(
        app, ["vulns", str(target), "--json", "--fail-on", "none"], env=_env(tmp_path / "home2")
    )
    assert len(json.loads(plain.stdout)["components"]) == 30, plain.output
