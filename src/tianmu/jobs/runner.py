"""Running jobs: one `execute_job` used by both runners, the in-process runner, and housekeeping.

`execute_job` claims the job, keeps its lease alive from a heartbeat thread while the handler works,
and records how it ended. The in-process runner (default for `tianmu serve` on one machine) runs jobs
on a thread pool; the Celery runner (`tianmu.jobs.celery_app`) sends the job id to `tianmu worker`
processes on any number of machines. Both share the database, so `tianmu jobs list` sees all.

A runner owns what its jobs share for as long as it lives — the loaded malware rule sets
(`RuleCache`) — and hands it to every job it runs; nothing of the kind is kept in a module.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update

from tianmu.core.config import Settings
from tianmu.core.errors import TianmuError
from tianmu.jobs import queue
from tianmu.jobs.handlers import JOB_KINDS, JobContext, validate_params
from tianmu.jobs.models import Job, JobCancelled, JobStatus
from tianmu.malware.rulecache import RuleCache
from tianmu.store.database import Store
from tianmu.store.schema import jobs

__all__ = [
    "InProcessRunner",
    "Outcome",
    "Runner",
    "execute_job",
    "periodic_jobs",
    "reap",
    "submit_job",
    "worker_name",
]

log = logging.getLogger(__name__)

Dispatch = Callable[[str], None]


class Runner(Protocol):
    def dispatch(self, job_id: str) -> None:
        """Have the job executed (it is already queued in the database)."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    job_id: str
    status: str
    """`done`, `failed`, `cancelled`, `skipped` (not ours to run), or `lost` (taken over meanwhile)."""


def worker_name(label: str = "worker") -> str:
    return f"{label}@{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def submit_job(
    store: Store,
    runner: Runner,
    kind: str,
    params: dict[str, Any],
    *,
    tenant: str = "default",
    idempotency_key: str | None = None,
    submitted_by: str | None = None,
) -> tuple[Job, bool]:
    """Check the parameters, queue the job, and dispatch it when it is new."""
    checked = validate_params(kind, params)
    job, created = queue.submit(
        store, kind, checked, tenant=tenant, idempotency_key=idempotency_key, submitted_by=submitted_by
    )
    if created:
        runner.dispatch(job.id)
    return job, created


class _Heartbeat(threading.Thread):
    """Renews the lease every third of it, so a live worker never loses a long job."""

    def __init__(self, store: Store, job: Job, lease: timedelta) -> None:
        super().__init__(name=f"lease-{job.id[:8]}", daemon=True)
        self.store, self.job, self.lease = store, job, lease
        self.stop = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stop.wait(self.lease.total_seconds() / 3):
            try:
                queue.renew(self.store, self.job, self.lease)
            except queue.LeaseLost:
                self.lost = True
                return
            except Exception:  # a database hiccup: try again next beat, the lease has slack
                log.warning("could not renew the lease of job %s", self.job.id, exc_info=True)


def execute_job(
    store: Store,
    settings: Settings,
    job_id: str,
    worker: str,
    dispatch: Dispatch,
    *,
    rules: RuleCache | None = None,
) -> Outcome:
    """Run one job to its end if it is ours to run. Never raises for a job's own failure.

    `rules`: the runner's loaded rule sets, kept across its jobs; None (a one-off run) loads them for
    this job only.
    """
    lease = timedelta(seconds=settings.job_lease_seconds)
    job = queue.claim(store, job_id, worker, lease, max_attempts=settings.job_max_attempts)
    if job is None:
        return Outcome(job_id, "skipped")
    spec = JOB_KINDS.get(job.kind)
    if spec is None:
        queue.fail(store, job, f"unknown job kind {job.kind!r}: this worker runs {', '.join(JOB_KINDS)}")
        return Outcome(job_id, "failed")
    ctx = JobContext(
        store=store,
        settings=settings,
        job=job,
        lease=lease,
        dispatch=dispatch,
        rules=rules if rules is not None else RuleCache(),
    )
    heartbeat = _Heartbeat(store, job, lease)
    heartbeat.start()
    try:
        result = spec.run(ctx)
        if not ctx.completed:
            with store.begin() as conn:
                queue.complete(conn, job, result)
        elif result != ctx.result:
            with store.begin() as conn:
                conn.execute(update(jobs).where(jobs.c.id == job.id).values(result=result))
        return Outcome(job_id, "done")
    except JobCancelled:
        queue.mark_cancelled(store, job)
        return Outcome(job_id, "cancelled")
    except queue.LeaseLost:
        return Outcome(job_id, "lost")
    except TianmuError as exc:
        queue.fail(store, job, str(exc))
        return Outcome(job_id, "failed")
    except Exception as exc:  # a bug in a handler must not kill the worker: record it on the job
        log.exception("job %s (%s) failed", job.id, job.kind)
        queue.fail(store, job, f"internal error: {exc.__class__.__name__}: {exc}")
        return Outcome(job_id, "failed")
    finally:
        heartbeat.stop.set()
        heartbeat.join()


def reap(store: Store, dispatch: Dispatch, *, max_attempts: int = queue.MAX_ATTEMPTS) -> list[str]:
    """Queue again the jobs whose worker died (lease passed) and dispatch them; returns their ids.

    Jobs lost `max_attempts` times are failed as poison jobs instead (`queue.requeue`)."""
    revived = queue.requeue(store, queue.expired_jobs(store), max_attempts=max_attempts)
    for job_id in revived:
        log.warning("job %s lost its worker; queued again", job_id)
        dispatch(job_id)
    return revived


def periodic_jobs(settings: Settings, now: datetime | None = None) -> list[tuple[str, dict[str, Any], str]]:
    """The scheduled jobs due in the current period: (kind, params, idempotency key).

    The key names the period (`periodic:kb_update:<slot>`), so however many schedulers tick — one per
    worker, or a restarted one — each period submits each job once.
    """
    moment = now or datetime.now(UTC)
    due: list[tuple[str, dict[str, Any], str]] = []
    schedule: tuple[tuple[str, float, dict[str, Any]], ...] = (
        ("kb_update", settings.kb_update_hours, {"sources": []}),
        ("reassess", settings.reassess_hours, {}),
    )
    for kind, hours, params in schedule:
        if hours > 0:
            slot = int(moment.timestamp() // (hours * 3600))
            due.append((kind, params, f"periodic:{kind}:{slot}"))
    return due


class InProcessRunner:
    """Runs jobs on a thread pool in this process, with a housekeeping thread for leases and schedules.

    Jobs left queued or running by a previous process are picked up on `start()`. The runner keeps one
    `RuleCache` (its own, or the one given) for every job it runs, as long as it lives.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        workers: int = 2,
        tick: float = 5.0,
        rules: RuleCache | None = None,
    ) -> None:
        self.store, self.settings = store, settings
        # `is not None`: an empty cache has length 0 and is falsy.
        self.rules = rules if rules is not None else RuleCache()
        self.workers = workers
        self.tick = tick
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self.futures: dict[str, Future[Outcome]] = {}

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use and again after a shutdown, so one runner can serve an app started twice.
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="tianmu-job")
            return self._pool

    def dispatch(self, job_id: str) -> None:
        self.futures[job_id] = self._executor().submit(
            lambda: execute_job(
                self.store, self.settings, job_id, worker_name("inproc"), self.dispatch, rules=self.rules
            )
        )

    def start(self) -> None:
        self._stop.clear()
        for job_id in _unfinished(self.store):
            self.dispatch(job_id)
        self._housekeeper = threading.Thread(target=self._housekeeping, name="tianmu-jobs", daemon=True)
        self._housekeeper.start()

    def _housekeeping(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                reap(self.store, self.dispatch, max_attempts=self.settings.job_max_attempts)
                for kind, params, key in periodic_jobs(self.settings):
                    submit_job(self.store, self, kind, params, idempotency_key=key, submitted_by="schedule")
            except Exception:
                log.exception("job housekeeping failed; trying again in %s s", self.tick)

    def wait(self, job_id: str, timeout: float | None = None) -> Outcome:
        return self.futures[job_id].result(timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._stop.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)
        if self._housekeeper is not None:
            self._housekeeper.join()
            self._housekeeper = None


def _unfinished(store: Store) -> list[str]:
    with store.connect() as conn:
        rows = conn.execute(
            select(jobs.c.id)
            .where(jobs.c.status == JobStatus.QUEUED.value, jobs.c.cancel_requested.is_(False))
            .order_by(jobs.c.created)
        )
        return [row.id for row in rows]
