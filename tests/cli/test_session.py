"""The settings of one `tianmu` invocation: read once at its edge, passed down, never kept between runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.cli.session import CliSession
from tianmu.core.config import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cli"


def _env(home: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(home), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


def test_each_invocation_reads_the_settings_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str | None] = []
    original = Settings.from_env.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Settings], environ: Mapping[str, str] | None = None) -> Settings:
        reads.append((environ or {}).get("TIANMU_HOME"))
        settings: Settings = original(cls, environ)
        return settings

    monkeypatch.setattr(Settings, "from_env", classmethod(counting))
    runner = CliRunner()
    # `findings triage` needs the tenant twice and the store: still one read of the environment.
    result = runner.invoke(app, ["findings", "triage", "deadbeef00", "resolved"], env=_env(tmp_path / "a"))
    assert result.exit_code == 2 and "0 findings match" in result.output
    assert reads == [str(tmp_path / "a")]
    result = runner.invoke(app, ["kb", "import", str(FIXTURES / "kb")], env=_env(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert reads == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_the_environment_of_each_invocation_counts(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["kb", "import", str(FIXTURES / "kb")], env=_env(tmp_path / "a")).exit_code == 0
    filled = runner.invoke(app, ["kb", "status", "--json"], env=_env(tmp_path / "a"))
    empty = runner.invoke(app, ["kb", "status", "--json"], env=_env(tmp_path / "b"))
    assert filled.exit_code == empty.exit_code == 0
    assert json.loads(filled.stdout) and json.loads(empty.stdout) == []


def test_a_session_given_by_the_caller_is_the_one_used(tmp_path: Path) -> None:
    runner = CliRunner()
    session = CliSession(_env(tmp_path / "given"))
    result = runner.invoke(
        app, ["kb", "import", str(FIXTURES / "kb")], env=_env(tmp_path / "env"), obj=session
    )
    assert result.exit_code == 0, result.output
    assert session.settings.home == tmp_path / "given"
    assert (tmp_path / "given" / "tianmu.db").exists() and not (tmp_path / "env").exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TIANMU_DATABASE_URL", "tianmu.db", "TIANMU_DATABASE_URL is not a database URL"),
        ("TIANMU_JOB_LEASE_SECONDS", "soon", "TIANMU_JOB_LEASE_SECONDS must be a number"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path, name: str, value: str, message: str) -> None:
    runner = CliRunner()
    env = {**_env(tmp_path / "home"), name: value}
    for command in (["kb", "status"], ["jobs", "list"], ["findings", "list"], ["incidents", "list"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), (command, result.output)
    # What needs no settings still works: the version, and the help of a command.
    assert runner.invoke(app, ["version"], env=env).exit_code == 0
    assert runner.invoke(app, ["kb", "status", "--help"], env=env).exit_code == 0
