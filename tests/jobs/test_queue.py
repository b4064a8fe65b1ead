"""The job table on SQLite and PostgreSQL: idempotent submits, one claim wins, leases, guarded completion."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from tianmu.core.errors import InputError
from tianmu.jobs import queue
from tianmu.jobs.models import JobStatus
from tianmu.store import Store
from tianmu.store.schema import jobs

LEASE = timedelta(seconds=30)


def test_same_idempotency_key_is_one_job(store: Store) -> None:
    first, created = queue.submit(store, "assess", {"path": "/srv/a"}, tenant="t1", idempotency_key="k")
    again, created_again = queue.submit(store, "assess", {"path": "/srv/b"}, tenant="t1", idempotency_key="k")
    other_tenant, created_other = queue.submit(
        store, "assess", {"path": "/srv/a"}, tenant="t2", idempotency_key="k"
    )
    assert created and not created_again and created_other
    assert again.id == first.id and again.params == {"path": "/srv/a"}
    assert other_tenant.id != first.id
    assert queue.get_job(store, first.id, tenant="t2") is None  # tenants never see each other's jobs


def test_only_one_of_many_racing_claims_wins(store: Store) -> None:
    job, _ = queue.submit(store, "assess", {"path": "/srv/a"})
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def race(name: str) -> None:
        barrier.wait()
        if queue.claim(store, job.id, name, LEASE) is not None:
            winners.append(name)

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    held = queue.get_job(store, job.id)
    assert held is not None and held.status is JobStatus.RUNNING and held.worker == winners[0]
    assert held.attempts == 1


def test_expired_lease_is_taken_over_and_the_old_run_cannot_complete(store: Store) -> None:
    job, _ = queue.submit(store, "assess", {"path": "/srv/a"})
    first = queue.claim(store, job.id, "dead-worker", LEASE)
    assert first is not None
    assert queue.claim(store, job.id, "other", LEASE) is None  # the lease is live
    with store.begin() as conn:  # the first worker stops renewing: its lease runs out
        conn.execute(update(jobs).values(lease_until=jobs.c.lease_until - timedelta(minutes=5)))
    assert queue.expired_jobs(store) == [job.id]
    assert queue.requeue(store, [job.id]) == [job.id]
    second = queue.claim(store, job.id, "live-worker", LEASE)
    assert second is not None and second.attempts == 2
    with pytest.raises(queue.LeaseLost), store.begin() as conn:
        queue.complete(conn, first, {"from": "the old run"})
    with pytest.raises(queue.LeaseLost):
        queue.renew(store, first, LEASE)
    with store.begin() as conn:
        queue.complete(conn, second, {"from": "the new run"})
    done = queue.get_job(store, job.id)
    assert done is not None and done.status is JobStatus.DONE and done.result == {"from": "the new run"}
    assert queue.claim(store, job.id, "late", LEASE) is None  # done is done


def test_cancel_queued_at_once_running_on_request(store: Store) -> None:
    waiting, _ = queue.submit(store, "assess", {"path": "/srv/a"})
    running, _ = queue.submit(store, "assess", {"path": "/srv/b"})
    held = queue.claim(store, running.id, "w", LEASE)
    assert held is not None
    assert queue.cancel(store, waiting.id, "default").status is JobStatus.CANCELLED
    assert queue.claim(store, waiting.id, "w", LEASE) is None
    assert queue.cancel(store, running.id, "default").cancel_requested
    assert queue.renew(store, held, LEASE, "step 2") is True  # the worker learns it at its next step
    with pytest.raises(InputError, match="no job"):
        queue.cancel(store, running.id, "another-tenant")


def test_list_is_per_tenant_newest_first(store: Store) -> None:
    ids = [queue.submit(store, "kb_update", {}, tenant="t")[0].id for _ in range(3)]
    queue.submit(store, "kb_update", {}, tenant="u")
    listed = queue.list_jobs(store, "t")
    assert {j.id for j in listed} == set(ids)
    assert [j.created for j in listed] == sorted((j.created for j in listed), reverse=True)
    assert queue.list_jobs(store, "t", status=JobStatus.DONE) == []


def _lose(store: Store) -> None:
    """The worker holding the job stops renewing (killed, hung): its lease runs out."""
    with store.begin() as conn:
        conn.execute(update(jobs).values(lease_until=jobs.c.lease_until - timedelta(minutes=5)))


def test_a_job_that_kills_its_worker_every_time_is_failed_not_run_for_ever(store: Store) -> None:
    """A poison job (a bomb that takes the worker down) is tried `max_attempts` times, then failed."""
    job, _ = queue.submit(store, "assess", {"path": "/srv/bomb"})
    for attempt in range(1, 3):
        taken = queue.claim(store, job.id, f"worker-{attempt}", LEASE, max_attempts=2)
        assert taken is not None and taken.attempts == attempt
        _lose(store)
        # A restarted worker may take an expired job straight away, without the reaper: not the last time.
        if attempt == 1:
            assert queue.requeue(store, queue.expired_jobs(store), max_attempts=2) == [job.id]
    assert queue.claim(store, job.id, "worker-3", LEASE, max_attempts=2) is None
    assert queue.requeue(store, queue.expired_jobs(store), max_attempts=2) == []
    failed = queue.get_job(store, job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and "lost its worker 2 times" in failed.error
    assert queue.claim(store, job.id, "worker-4", LEASE, max_attempts=5) is None  # failed stays failed
