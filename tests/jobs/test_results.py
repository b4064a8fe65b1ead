"""Honest job results: what a job could not read is on the job, and `kb_import` takes `replace`.

Before issue 21 an SBOM job that read nothing ended `done` with 0 components (the error only in the
stored assessment), a job that read part of its input said nothing of the rest, and the `kb_import`
job could only merge (`tianmu kb import --replace` could replace). Each test here failed on that code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.core.config import Settings
from tianmu.core.errors import InputError
from tianmu.jobs import InProcessRunner, JobStatus, get_job, submit_job
from tianmu.store import Store
from tianmu.store.schema import advisories, assessments

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cli"
# A CycloneDX SBOM cut short, as an upload that broke off (or a 400 MB one the reader gave up on).
BROKEN_SBOM = '{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [ {"name": '


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", database_url="unused", job_lease_seconds=5)


def _tree(root: Path, *, requirements: bool) -> Path:
    (root / "sbom").mkdir(parents=True)
    (root / "sbom" / "bom.cdx.json").write_text(BROKEN_SBOM, encoding="utf-8")
    if requirements:
        (root / "app").mkdir()
        (root / "app" / "requirements.txt").write_text("django==3.2.0\n", encoding="utf-8")
    return root


def _run(store: Store, settings: Settings, kind: str, params: dict[str, object]) -> str:
    runner = InProcessRunner(store, settings, workers=1)
    try:
        job, _ = submit_job(store, runner, kind, params)
        runner.wait(job.id, 60)
    finally:
        runner.shutdown()
    return job.id


def test_a_job_that_read_part_of_its_input_is_done_and_partial(
    sqlite_store: Store, settings: Settings, tmp_path: Path
) -> None:
    target = _tree(tmp_path / "target", requirements=True)
    job = get_job(sqlite_store, _run(sqlite_store, settings, "assess", {"path": str(target), "engines": []}))
    assert job is not None and job.status is JobStatus.DONE, job
    assert job.result is not None and job.result["components"] == 1
    assert job.partial and job.error_count == 1
    (error,) = job.first_errors
    assert error.startswith("sbom/bom.cdx.json:1: invalid JSON")


def test_a_job_that_read_nothing_fails_with_the_reason_and_stores_nothing(
    sqlite_store: Store, settings: Settings, tmp_path: Path
) -> None:
    target = _tree(tmp_path / "upload", requirements=False)
    job = get_job(sqlite_store, _run(sqlite_store, settings, "assess", {"path": str(target)}))
    assert job is not None and job.status is JobStatus.FAILED, job
    assert job.error is not None
    assert "none of the 1 inventory file(s) could be read" in job.error
    assert "bom.cdx.json:1: invalid JSON" in job.error
    assert job.result is not None and job.result["components"] == 0 and job.error_count == 1
    assert not job.partial  # nothing was read: failed, not partly done
    with sqlite_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(assessments)).scalar() == 0


def test_a_complete_job_is_not_partial(sqlite_store: Store, settings: Settings, tmp_path: Path) -> None:
    target = Path(shutil.copytree(FIXTURES / "target", tmp_path / "target"))
    job = get_job(sqlite_store, _run(sqlite_store, settings, "assess", {"path": str(target), "engines": []}))
    assert job is not None and job.status is JobStatus.DONE
    assert not job.partial and job.error_count == 0 and job.first_errors == []


def _advisories(store: Store) -> int:
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(advisories)).scalar() or 0)


def test_kb_import_merges_by_default_and_replaces_when_asked(
    sqlite_store: Store, settings: Settings, tmp_path: Path
) -> None:
    full, part = tmp_path / "full" / "osv" / "PyPI", tmp_path / "part" / "osv" / "PyPI"
    shutil.copytree(FIXTURES / "kb" / "osv", full)
    part.mkdir(parents=True)
    shutil.copy(full / "TIANMU-TEST-2021-0001.json", part)
    assert get_job(sqlite_store, _run(sqlite_store, settings, "kb_import", {"path": str(full)})) is not None
    assert _advisories(sqlite_store) == 2
    merged = get_job(sqlite_store, _run(sqlite_store, settings, "kb_import", {"path": str(part)}))
    assert merged is not None and merged.status is JobStatus.DONE and merged.params["replace"] is False
    assert _advisories(sqlite_store) == 2  # a merge keeps the record the part lacks, and says so
    assert merged.partial and "--replace removes them" in merged.first_errors[0]
    replaced = get_job(
        sqlite_store, _run(sqlite_store, settings, "kb_import", {"path": str(part), "replace": "true"})
    )
    assert replaced is not None and replaced.status is JobStatus.DONE, replaced
    assert replaced.params["replace"] is True and replaced.result is not None
    (report,) = replaced.result["reports"]
    assert (report["removed"], report["record_count"]) == (1, 1)
    assert _advisories(sqlite_store) == 1


@pytest.mark.parametrize("value", ["maybe", 2, ["true"]])
def test_kb_import_replace_must_be_a_boolean(sqlite_store: Store, settings: Settings, value: object) -> None:
    runner = InProcessRunner(sqlite_store, settings)
    with pytest.raises(InputError, match="parameter `replace` must be true or false"):
        submit_job(sqlite_store, runner, "kb_import", {"path": "/kb", "replace": value})
    with pytest.raises(InputError, match="unknown parameter"):
        submit_job(sqlite_store, runner, "kb_import", {"path": "/kb", "replce": True})
    runner.shutdown()


def test_cli_shows_a_partial_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out_console, "width", 200)
    env = {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    target = _tree(tmp_path / "target [x]", requirements=True)  # a `[` that rich would take as markup
    cli = CliRunner()
    submitted = cli.invoke(
        app,
        ["jobs", "submit", "assess", "--runner", "local", "-p", f"path={target}", "-p", "engines=", "--json"],
        env=env,
    )
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    assert job["status"] == "done" and job["result"]["partial"] is True
    assert job["result"]["error_count"] == 1
    shown = cli.invoke(app, ["jobs", "show", job["id"]], env=env)
    assert shown.exit_code == 0, shown.output
    assert "assess — done (partial: 1 error(s))" in shown.stdout
    assert "errors (1):" in shown.stdout and "sbom/bom.cdx.json:1: invalid JSON" in shown.stdout
    assert "target [x]" in shown.stdout
    listed = cli.invoke(app, ["jobs", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "done (partial: 1 error(s))" in listed.stdout and "sbom/bom.cdx.json:1" in listed.stdout


def test_a_job_says_what_its_run_left_out(sqlite_store: Store, settings: Settings, tmp_path: Path) -> None:
    target = _tree(tmp_path / "target", requirements=True)
    (target / ".tianmuignore").write_text("*\n", encoding="utf-8")  # a job never honours one
    job = get_job(sqlite_store, _run(sqlite_store, settings, "assess", {"path": str(target), "engines": []}))
    assert job is not None and job.result is not None, job
    notes = job.result["notes"]
    assert any(".tianmuignore" in note for note in notes), notes
