"""Running jobs in process: assessments stored once, failures and cancels recorded, lost jobs revived."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tianmu.core.config import Settings
from tianmu.core.errors import InputError
from tianmu.jobs import InProcessRunner, Job, JobStatus, execute_job, get_job, queue, submit_job
from tianmu.jobs.runner import periodic_jobs, reap
from tianmu.store import Store
from tianmu.store.schema import assessments, findings, jobs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cli"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", database_url="unused", job_lease_seconds=5)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "target", tmp_path / "target"))


def _import_kb(store: Store, settings: Settings) -> None:
    runner = InProcessRunner(store, settings, workers=1)
    job, _ = submit_job(store, runner, "kb_import", {"path": str(FIXTURES / "kb")})
    assert runner.wait(job.id, 60).status == "done"
    runner.shutdown()


def test_assess_job_stores_its_assessment_once_and_reports_it(
    sqlite_store: Store, settings: Settings, target: Path
) -> None:
    _import_kb(sqlite_store, settings)
    runner = InProcessRunner(sqlite_store, settings, workers=2)
    job, created = submit_job(
        sqlite_store, runner, "assess", {"path": str(target)}, idempotency_key="nightly-1"
    )
    again, created_again = submit_job(
        sqlite_store, runner, "assess", {"path": str(target)}, idempotency_key="nightly-1"
    )
    assert created and not created_again and again.id == job.id
    assert runner.wait(job.id, 60).status == "done"
    runner.shutdown()
    done = get_job(sqlite_store, job.id)
    assert done is not None and done.status is JobStatus.DONE and done.result is not None
    with sqlite_store.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(assessments)).scalar()
        stored_findings = conn.execute(select(func.count()).select_from(findings)).scalar_one()
    assert stored == 1 and done.result["assessment_id"] == 1
    assert done.result["findings"] == stored_findings > 0
    assert done.result["new_findings"] == stored_findings


def test_a_second_run_of_a_done_job_changes_nothing(
    sqlite_store: Store, settings: Settings, target: Path
) -> None:
    runner = InProcessRunner(sqlite_store, settings, workers=1)
    job, _ = submit_job(sqlite_store, runner, "assess", {"path": str(target), "engines": []})
    assert runner.wait(job.id, 60).status == "done"
    runner.shutdown()
    # The broker delivers the same message again (a worker died before acknowledging it).
    outcome = execute_job(sqlite_store, settings, job.id, "late-worker", lambda _id: None)
    assert outcome.status == "skipped"
    with sqlite_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(assessments)).scalar() == 1


def test_bad_parameters_are_refused_before_queueing(sqlite_store: Store, settings: Settings) -> None:
    runner = InProcessRunner(sqlite_store, settings)
    with pytest.raises(InputError, match="parameter `path` is required"):
        submit_job(sqlite_store, runner, "assess", {})
    with pytest.raises(InputError, match="unknown engine"):
        submit_job(sqlite_store, runner, "assess", {"path": "/x", "engines": "vulnerability,telepathy"})
    with pytest.raises(InputError, match="unknown job kind 'mine-bitcoin'"):
        submit_job(sqlite_store, runner, "mine-bitcoin", {})
    runner.shutdown()
    assert queue.list_jobs(sqlite_store, "default") == []


def test_a_failing_job_records_the_reason(sqlite_store: Store, settings: Settings, tmp_path: Path) -> None:
    runner = InProcessRunner(sqlite_store, settings, workers=1)
    job, _ = submit_job(sqlite_store, runner, "assess", {"path": str(tmp_path / "gone")})
    assert runner.wait(job.id, 60).status == "failed"
    runner.shutdown()
    failed = get_job(sqlite_store, job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and "gone: no such file or directory" in failed.error


def test_cancel_reaches_a_running_job_at_its_next_step(
    sqlite_store: Store, settings: Settings, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, _ = queue.submit(sqlite_store, "assess", {"path": str(target)})
    original_claim = queue.claim

    def claim_then_cancel(
        store: Store, job_id: str, worker: str, lease: timedelta, *, max_attempts: int = 3
    ) -> Job | None:
        held = original_claim(store, job_id, worker, lease, max_attempts=max_attempts)
        queue.cancel(store, job_id, "default")  # the user cancels right after the worker took it
        return held

    monkeypatch.setattr(queue, "claim", claim_then_cancel)
    outcome = execute_job(sqlite_store, settings, job.id, "w", lambda _id: None)
    assert outcome.status == "cancelled"
    cancelled = get_job(sqlite_store, job.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    with sqlite_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(assessments)).scalar() == 0


def test_reaper_revives_a_job_whose_worker_died(
    sqlite_store: Store, settings: Settings, target: Path
) -> None:
    job, _ = queue.submit(sqlite_store, "assess", {"path": str(target), "engines": []})
    assert queue.claim(sqlite_store, job.id, "crashed", timedelta(seconds=5)) is not None
    with sqlite_store.begin() as conn:
        conn.execute(update(jobs).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    dispatched: list[str] = []
    assert reap(sqlite_store, dispatched.append) == [job.id] == dispatched
    outcome = execute_job(sqlite_store, settings, job.id, "survivor", lambda _id: None)
    assert outcome.status == "done"
    revived = get_job(sqlite_store, job.id)
    assert revived is not None and revived.attempts == 2 and revived.worker == "survivor"


def test_periodic_jobs_are_keyed_by_period(settings: Settings) -> None:
    assert periodic_jobs(settings) == []
    hourly = replace(settings, kb_update_hours=1.0, reassess_hours=24.0)
    noon = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    at_noon = periodic_jobs(hourly, noon)
    assert [kind for kind, _p, _k in at_noon] == ["kb_update", "reassess"]
    assert periodic_jobs(hourly, noon + timedelta(minutes=59)) == at_noon
    later = periodic_jobs(hourly, noon + timedelta(hours=1))
    assert later[0][2] != at_noon[0][2] and later[1][2] == at_noon[1][2]


def test_reassess_queues_every_path_asset_once(sqlite_store: Store, settings: Settings, target: Path) -> None:
    runner = InProcessRunner(sqlite_store, settings, workers=1)
    first, _ = submit_job(sqlite_store, runner, "assess", {"path": str(target), "engines": []})
    assert runner.wait(first.id, 60).status == "done"
    sweep, _ = submit_job(sqlite_store, runner, "reassess", {})
    assert runner.wait(sweep.id, 60).status == "done"
    done = get_job(sqlite_store, sweep.id)
    assert done is not None and done.result is not None and len(done.result["queued"]) == 1
    (queued,) = done.result["queued"]
    assert runner.wait(queued, 60).status == "done"
    runner.shutdown()
    with sqlite_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(assessments)).scalar() == 2
