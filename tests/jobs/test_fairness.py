"""Fair scheduling between tenants: the next job is chosen across tenants, not first come first served.

Before issue 21 the in-process runner ran jobs in the order they were dispatched, so tenant B's one job
waited behind every job tenant A had queued before it (a 2 GiB log upload made every other job wait
12 minutes). These tests failed on that code.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from tianmu.core.config import Settings
from tianmu.jobs import InProcessRunner, JobStatus, get_job, queue
from tianmu.store import Store
from tianmu.store.schema import jobs

LEASE = timedelta(seconds=30)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cli"


def test_the_tenant_with_fewest_running_jobs_goes_first(store: Store) -> None:
    a_jobs = [queue.submit(store, "assess", {"path": f"/a/{i}"}, tenant="a")[0] for i in range(4)]
    b_job, _ = queue.submit(store, "assess", {"path": "/b"}, tenant="b")  # queued last
    first = queue.claim_next(store, "w1", LEASE)
    assert first is not None and first.id == a_jobs[0].id  # nobody runs anything: the oldest job
    second = queue.claim_next(store, "w2", LEASE)
    assert second is not None and second.id == b_job.id  # a runs one, b none: b's job, though newest
    third = queue.claim_next(store, "w3", LEASE)
    assert third is not None and third.id == a_jobs[1].id  # b has nothing left: a's next oldest


def test_tenants_take_turns_when_one_worker_frees_up_at_a_time(store: Store) -> None:
    a_jobs = [queue.submit(store, "assess", {"path": f"/a/{i}"}, tenant="a")[0] for i in range(3)]
    b_jobs = [queue.submit(store, "assess", {"path": f"/b/{i}"}, tenant="b")[0] for i in range(2)]
    order = []
    while (job := queue.claim_next(store, "w", LEASE)) is not None:
        order.append(job.id)
        with store.begin() as conn:  # one worker: each job ends before the next is chosen
            conn.execute(update(jobs).where(jobs.c.id == job.id).values(status=JobStatus.DONE.value))
    a, b = [j.id for j in a_jobs], [j.id for j in b_jobs]
    assert order == [a[0], b[0], a[1], b[1], a[2]]


def test_the_choice_is_among_the_jobs_a_runner_was_handed(store: Store) -> None:
    elsewhere, _ = queue.submit(store, "assess", {"path": "/celery"}, tenant="a")
    mine, _ = queue.submit(store, "assess", {"path": "/local"}, tenant="a")
    assert queue.claim_next(store, "w", LEASE, among=[]) is None
    claimed = queue.claim_next(store, "w", LEASE, among=[mine.id])
    assert claimed is not None and claimed.id == mine.id
    still = queue.get_job(store, elsewhere.id)
    assert still is not None and still.status is JobStatus.QUEUED
    cancelled, _ = queue.submit(store, "assess", {"path": "/x"}, tenant="b")
    queue.cancel(store, cancelled.id, "b")
    assert queue.claim_next(store, "w", LEASE, among=[cancelled.id]) is None


def test_the_in_process_runner_does_not_make_one_tenant_wait_for_anothers_queue(
    sqlite_store: Store, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", database_url="unused", job_lease_seconds=5)
    target = shutil.copytree(FIXTURES / "target", tmp_path / "target")
    params = {"path": str(target), "engines": []}
    a_jobs = [queue.submit(sqlite_store, "assess", params, tenant="a")[0] for _ in range(5)]
    b_job, _ = queue.submit(sqlite_store, "assess", params, tenant="b")
    runner = InProcessRunner(sqlite_store, settings, workers=1)
    try:
        runner.start()  # takes up what is queued, as a restarted service does
        for job in [*a_jobs, b_job]:
            assert runner.wait(job.id, 60).status == "done"
    finally:
        runner.shutdown()
    started = {}
    for job in [*a_jobs, b_job]:
        ran = get_job(sqlite_store, job.id)
        assert ran is not None and ran.started is not None
        started[ran.started] = ran.tenant
    order = [started[moment] for moment in sorted(started)]
    assert order[:2] == ["a", "b"], order  # b's job second, not sixth
