"""The job table: submit, claim under a lease, renew, complete, fail, cancel, and find lost jobs.

Every state change is one conditional UPDATE, so that two workers racing for the same job, or a late
worker whose lease has passed, can never both win: the one whose WHERE clause still holds changes the
row, the other sees zero rows changed. See `tianmu.jobs.models` for the guarantees this gives.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from tianmu.core.errors import InputError
from tianmu.core.models import utcnow
from tianmu.jobs.models import Job, JobStatus
from tianmu.store.database import Store
from tianmu.store.schema import jobs

__all__ = [
    "MAX_ATTEMPTS",
    "LeaseLost",
    "cancel",
    "cancel_requested",
    "claim",
    "claim_next",
    "complete",
    "expired_jobs",
    "fail",
    "get_job",
    "list_jobs",
    "mark_cancelled",
    "release",
    "renew",
    "requeue",
    "submit",
]


class LeaseLost(Exception):
    """This worker no longer holds the job (its lease passed and another worker took it over)."""


MAX_ATTEMPTS = 3
"""Runs of one job that may end with its worker lost before the job is failed as a poison job."""


def _job(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        tenant=row.tenant,
        kind=row.kind,
        params=dict(row.params or {}),
        status=JobStatus(row.status),
        created=row.created,
        attempts=int(row.attempts),
        worker=row.worker,
        lease_until=row.lease_until,
        cancel_requested=bool(row.cancel_requested),
        progress=row.progress or "",
        result=row.result,
        error=row.error,
        started=row.started,
        finished=row.finished,
        idempotency_key=row.idempotency_key,
        submitted_by=row.submitted_by,
    )


def submit(
    store: Store,
    kind: str,
    params: dict[str, Any],
    *,
    tenant: str = "default",
    idempotency_key: str | None = None,
    submitted_by: str | None = None,
) -> tuple[Job, bool]:
    """Queue a job; returns (job, created). With a known idempotency key, the existing job, False."""
    if idempotency_key is not None:
        existing = _by_key(store, tenant, idempotency_key)
        if existing is not None:
            return existing, False
    job_id = str(uuid.uuid4())
    row = {
        "id": job_id,
        "tenant": tenant,
        "kind": kind,
        "params": params,
        "status": JobStatus.QUEUED.value,
        "idempotency_key": idempotency_key,
        "attempts": 0,
        "cancel_requested": False,
        "progress": "",
        "created": utcnow(),
        "submitted_by": submitted_by,
    }
    try:
        with store.begin() as conn:
            conn.execute(insert(jobs).values(**row))
    except IntegrityError:
        # Two submissions with one key raced; the other insert won, and that job is the job.
        existing = _by_key(store, tenant, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    job = get_job(store, job_id)
    assert job is not None
    return job, True


def _by_key(store: Store, tenant: str, key: str) -> Job | None:
    with store.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.tenant == tenant, jobs.c.idempotency_key == key)).first()
    return _job(row) if row else None


def get_job(store: Store, job_id: str, tenant: str | None = None) -> Job | None:
    """The job, or None; with `tenant`, None too when the job belongs to another tenant."""
    query = select(jobs).where(jobs.c.id == job_id)
    if tenant is not None:
        query = query.where(jobs.c.tenant == tenant)
    with store.connect() as conn:
        row = conn.execute(query).first()
    return _job(row) if row else None


def list_jobs(
    store: Store, tenant: str, *, status: JobStatus | None = None, kind: str | None = None, limit: int = 50
) -> list[Job]:
    """The tenant's jobs, newest first."""
    query = select(jobs).where(jobs.c.tenant == tenant)
    if status is not None:
        query = query.where(jobs.c.status == status.value)
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    query = query.order_by(jobs.c.created.desc(), jobs.c.id).limit(limit)
    with store.connect() as conn:
        return [_job(row) for row in conn.execute(query)]


def _claimable(now: datetime, max_attempts: int) -> Any:
    """Queued, or running under a lease that has passed and not yet lost `max_attempts` times."""
    return and_(
        jobs.c.cancel_requested.is_(False),
        or_(
            jobs.c.status == JobStatus.QUEUED.value,
            and_(
                jobs.c.status == JobStatus.RUNNING.value,
                jobs.c.lease_until < now,
                jobs.c.attempts < max_attempts,
            ),
        ),
    )


def claim(
    store: Store, job_id: str, worker: str, lease: timedelta, *, max_attempts: int = MAX_ATTEMPTS
) -> Job | None:
    """Take the job for `worker` if it is queued, or running under a lease that has passed.

    Returns the claimed job (its `attempts` identifies this run), or None when it is not ours to run:
    done, failed, cancelled, running under a live lease elsewhere, or lost `max_attempts` times already
    (a poison job: the reaper marks it failed instead of running it again).
    """
    now = utcnow()
    claimable = and_(jobs.c.id == job_id, _claimable(now, max_attempts))
    with store.begin() as conn:
        changed = conn.execute(
            update(jobs)
            .where(claimable)
            .values(
                status=JobStatus.RUNNING.value,
                worker=worker,
                attempts=jobs.c.attempts + 1,
                lease_until=now + lease,
                started=now,
                error=None,
            )
        ).rowcount
        if changed != 1:
            return None
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
    return _job(row)


FAIR_CANDIDATES = 16
"""Jobs `claim_next` takes from one SELECT, to try in its order (a race lost to another worker costs
one; when all are lost, it chooses again)."""


def claim_next(
    store: Store,
    worker: str,
    lease: timedelta,
    *,
    among: Collection[str] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> Job | None:
    """Claim the job that should run next, fairly across tenants; None when there is none to claim.

    The order: the tenant with the fewest running jobs first; among equals, the tenant served longest
    ago (the one whose latest job started earliest, or never); then the oldest job. So tenants take
    turns — with one worker as with many — and a tenant whose one job arrives behind another tenant's
    twenty waits for one job to end, not for twenty. `among` limits the choice to the jobs a runner
    was handed (a `--runner local` run takes only its own job, never one queued for Celery workers).
    """
    now = utcnow()
    live = and_(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_until >= now)
    tenants = (
        select(
            jobs.c.tenant,
            func.sum(case((live, 1), else_=0)).label("running"),
            func.max(jobs.c.started).label("served"),
        )
        .group_by(jobs.c.tenant)
        .subquery()
    )
    query = (
        select(jobs.c.id)
        .select_from(jobs.join(tenants, tenants.c.tenant == jobs.c.tenant))
        .where(_claimable(now, max_attempts))
        .order_by(
            tenants.c.running,
            case((tenants.c.served.is_(None), 0), else_=1),  # never served: first, on every database
            tenants.c.served,
            jobs.c.created,
            jobs.c.id,
        )
        .limit(FAIR_CANDIDATES)
    )
    if among is not None:
        if not among:
            return None
        query = query.where(jobs.c.id.in_(list(among)))
    while True:
        with store.connect() as conn:
            candidates = list(conn.execute(query).scalars())
        if not candidates:
            return None
        for job_id in candidates:
            # Another worker may have claimed it since the SELECT: the conditional claim decides.
            job = claim(store, job_id, worker, lease, max_attempts=max_attempts)
            if job is not None:
                return job
        # Every candidate went to other workers meanwhile: choose again among what is left.


def cancel_requested(store: Store, job_id: str) -> bool:
    """Whether a cancel was asked for the job (the watcher of a job's process reads it every second)."""
    with store.connect() as conn:
        return bool(conn.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())


def release(store: Store, job: Job) -> None:
    """Give a job this run still holds back to the queue, not counting the run as an attempt.

    For a runner that stops (service shutdown) and kills the job's process: the next runner takes the
    job from the start, and a job interrupted by restarts is not mistaken for a poison job.
    """
    with store.begin() as conn:
        conn.execute(
            update(jobs)
            .where(_held(job))
            .values(
                status=JobStatus.QUEUED.value,
                worker=None,
                lease_until=None,
                attempts=jobs.c.attempts - 1,
                progress="",
            )
        )


def _held(job: Job) -> Any:
    """The WHERE clause that is true only while this run (worker and attempt) still holds the job."""
    return and_(
        jobs.c.id == job.id,
        jobs.c.status == JobStatus.RUNNING.value,
        jobs.c.worker == job.worker,
        jobs.c.attempts == job.attempts,
    )


def renew(store: Store, job: Job, lease: timedelta, progress: str | None = None) -> bool:
    """Extend this run's lease (and record progress); returns whether cancellation was requested.

    Raises LeaseLost when the job is no longer this run's.
    """
    values: dict[str, Any] = {"lease_until": utcnow() + lease}
    if progress is not None:
        values["progress"] = progress[:2000]
    with store.begin() as conn:
        if conn.execute(update(jobs).where(_held(job)).values(**values)).rowcount != 1:
            raise LeaseLost(job.id)
        flag = conn.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job.id)).scalar()
    return bool(flag)


def complete(conn: Connection, job: Job, result: dict[str, Any]) -> None:
    """Mark the run done inside the caller's transaction, so the job's effects commit with it or not at all.

    Raises LeaseLost (and the caller's transaction rolls back) when another run took the job over.
    """
    changed = conn.execute(
        update(jobs)
        .where(_held(job))
        .values(status=JobStatus.DONE.value, result=result, finished=utcnow(), lease_until=None)
    ).rowcount
    if changed != 1:
        raise LeaseLost(job.id)


def fail(store: Store, job: Job, error: str, result: dict[str, Any] | None = None) -> None:
    """Mark this run failed with the reason (and what it read, when it read something)."""
    values: dict[str, Any] = {
        "status": JobStatus.FAILED.value,
        "error": error[:4000],
        "finished": utcnow(),
        "lease_until": None,
    }
    if result is not None:
        values["result"] = result
    with store.begin() as conn:
        conn.execute(update(jobs).where(_held(job)).values(**values))


def mark_cancelled(store: Store, job: Job) -> None:
    with store.begin() as conn:
        conn.execute(
            update(jobs)
            .where(_held(job))
            .values(status=JobStatus.CANCELLED.value, finished=utcnow(), lease_until=None)
        )


def cancel(store: Store, job_id: str, tenant: str) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its runner kills its process within about
    a second; a job run in-thread stops at its next progress step)."""
    job = get_job(store, job_id, tenant)
    if job is None:
        raise InputError(f"no job {job_id} in tenant {tenant}")
    with store.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELLED.value, cancel_requested=True, finished=utcnow())
        )
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
            .values(cancel_requested=True)
        )
    updated = get_job(store, job_id, tenant)
    assert updated is not None
    return updated


def expired_jobs(store: Store, now: datetime | None = None) -> list[str]:
    """Running jobs whose lease has passed: their worker died or hung."""
    moment = now or utcnow()
    with store.connect() as conn:
        rows = conn.execute(
            select(jobs.c.id).where(
                jobs.c.status == JobStatus.RUNNING.value,
                jobs.c.lease_until < moment,
                jobs.c.cancel_requested.is_(False),
            )
        )
        return [row.id for row in rows]


def requeue(store: Store, job_ids: Sequence[str], *, max_attempts: int = MAX_ATTEMPTS) -> list[str]:
    """Put lost jobs back to `queued` (only those still expired: a renewing worker keeps its job).

    A job lost `max_attempts` times is a poison job (it kills or hangs whatever runs it: a parser bomb,
    memory it cannot have): it is marked failed with the reason instead, so a restarted service does
    not take it up and die again, for ever.
    """
    now = utcnow()
    done: list[str] = []
    with store.begin() as conn:
        for job_id in job_ids:
            lost = and_(
                jobs.c.id == job_id,
                jobs.c.status == JobStatus.RUNNING.value,
                jobs.c.lease_until < now,
            )
            poisoned = conn.execute(
                update(jobs)
                .where(lost, jobs.c.attempts >= max_attempts)
                .values(
                    status=JobStatus.FAILED.value,
                    lease_until=None,
                    finished=now,
                    error=(
                        f"lost its worker {max_attempts} times (killed or hung while running it): "
                        "not run again; fix the input or raise TIANMU_JOB_MAX_ATTEMPTS and resubmit"
                    ),
                )
            ).rowcount
            if poisoned:
                continue
            changed = conn.execute(
                update(jobs).where(lost).values(status=JobStatus.QUEUED.value, lease_until=None, worker=None)
            ).rowcount
            if changed == 1:
                done.append(job_id)
    return done
