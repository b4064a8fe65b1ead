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
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update

from tianmu.core.config import Settings
from tianmu.core.errors import TianmuError
from tianmu.jobs import queue
from tianmu.jobs.handlers import JOB_KINDS, JobContext, JobFailed, JobKind, validate_params
from tianmu.jobs.isolation import ProcessLimits, Watch, can_isolate, run_in_child
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
    "run_claimed",
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
    kinds: Mapping[str, JobKind] | None = None,
) -> tuple[Job, bool]:
    """Check the parameters, queue the job, and dispatch it when it is new."""
    checked = validate_params(kind, params, kinds)
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
    kinds: Mapping[str, JobKind] | None = None,
    stopping: threading.Event | None = None,
) -> Outcome:
    """Run one job to its end if it is ours to run. Never raises for a job's own failure.

    `rules`: the runner's loaded rule sets, kept across its jobs; None (a one-off run) loads them for
    this job only. `kinds`: the job kinds this worker runs (default `JOB_KINDS`). `stopping`: set when
    the runner stops without waiting; a job in a child process is then killed and queued again.
    """
    lease = timedelta(seconds=settings.job_lease_seconds)
    job = queue.claim(store, job_id, worker, lease, max_attempts=settings.job_max_attempts)
    if job is None:
        return Outcome(job_id, "skipped")
    return run_claimed(store, settings, job, dispatch, rules=rules, kinds=kinds, stopping=stopping)


def run_claimed(
    store: Store,
    settings: Settings,
    job: Job,
    dispatch: Dispatch,
    *,
    rules: RuleCache | None = None,
    kinds: Mapping[str, JobKind] | None = None,
    stopping: threading.Event | None = None,
) -> Outcome:
    """Run a job this worker has claimed: in a child process with limits (`tianmu.jobs.isolation`),
    or in this thread when TIANMU_JOB_ISOLATION is off or the platform cannot fork."""
    known = JOB_KINDS if kinds is None else kinds
    spec = known.get(job.kind)
    if spec is None:
        queue.fail(store, job, f"unknown job kind {job.kind!r}: this worker runs {', '.join(known)}")
        return Outcome(job.id, "failed")
    lease = timedelta(seconds=settings.job_lease_seconds)
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
        if can_isolate(settings):
            return _isolated(ctx, spec, heartbeat, stopping or threading.Event())
        return _run_handler(ctx, spec)
    finally:
        heartbeat.stop.set()
        heartbeat.join()


def _run_handler(ctx: JobContext, spec: JobKind, limits: ProcessLimits | None = None) -> Outcome:
    """The handler, and the job's end written as it ended (`limits`: those of the child it runs in)."""
    store, job = ctx.store, ctx.job
    try:
        result = spec.run(ctx)
        if not ctx.completed:
            with store.begin() as conn:
                queue.complete(conn, job, result)
        elif result != ctx.result:
            with store.begin() as conn:
                conn.execute(update(jobs).where(jobs.c.id == job.id).values(result=result))
        return Outcome(job.id, "done")
    except JobCancelled:
        queue.mark_cancelled(store, job)
        return Outcome(job.id, "cancelled")
    except queue.LeaseLost:
        return Outcome(job.id, "lost")
    except JobFailed as exc:
        queue.fail(store, job, str(exc), exc.result)
        return Outcome(job.id, "failed")
    except TianmuError as exc:
        queue.fail(store, job, str(exc))
        return Outcome(job.id, "failed")
    except MemoryError:
        if limits is not None:
            raise  # the child reports it, and its parent records the limit that was hit
        log.error("job %s (%s) ran out of memory", job.id, job.kind)
        queue.fail(store, job, "ran out of memory (TIANMU_JOB_ISOLATION is off: no limit of its own)")
        return Outcome(job.id, "failed")
    except Exception as exc:  # a bug in a handler must not kill the worker: record it on the job
        log.exception("job %s (%s) failed", job.id, job.kind)
        queue.fail(store, job, f"internal error: {exc.__class__.__name__}: {exc}")
        return Outcome(job.id, "failed")


_STARTS = 3
"""Forks of one job whose process never became ready (a lock inherited at fork) before it fails."""


def _isolated(ctx: JobContext, spec: JobKind, heartbeat: _Heartbeat, stopping: threading.Event) -> Outcome:
    """The handler in a child process under the job's limits; the job's end recorded however it ends.

    The child inherits the runner's `RuleCache` as it is at the fork: rule sets the runner has loaded
    cost the job nothing (copy-on-write pages), but what the child loads dies with it. So the child
    reports the rule files it used and the runner loads them after the job (from its own data
    directory only), for the next job's child to inherit.
    """
    store, job, rules = ctx.store, ctx.job, ctx.rules
    limits = ProcessLimits.of(ctx.settings)

    def prepare() -> None:
        # The parent's pooled connections are the parent's: the child opens its own (SQLAlchemy's
        # recipe for fork), and checks that it can before it says it is ready.
        store.engine.dispose(close=False)
        rules.after_fork()
        with store.connect():
            pass

    def work(to_parent: Dispatch) -> dict[str, Any]:
        # A job the handler queues goes to the parent's runner: this process's copy of it (its pool,
        # its broker connection) is not the one that runs jobs.
        ctx.dispatch = to_parent
        outcome = _run_handler(ctx, spec, limits)
        return {"status": outcome.status, "rules": [str(path) for path in rules.paths()]}

    watch = Watch(
        cancelled=lambda: queue.cancel_requested(store, job.id),
        lost=lambda: heartbeat.lost,
        stopping=stopping,
        dispatch=ctx.dispatch,
    )
    for _start in range(_STARTS):
        end = run_in_child(work, limits, watch, prepare=prepare)
        if end.status != "stalled":
            break
        log.warning("job %s: %s; forking it again", job.id, end.reason)
    _keep_rules(ctx, end.report.get("rules"))
    if end.status in ("done", "failed", "cancelled", "lost"):
        # The child wrote the job's end itself; or the lease was lost, and the job is another's.
        return Outcome(job.id, end.status)
    if end.status == "stopped":
        queue.release(store, job)
    elif end.status == "cancel":
        queue.mark_cancelled(store, job)
    else:  # memory, timeout, killed, crashed, stalled
        log.warning("job %s (%s) failed: %s", job.id, job.kind, end.reason)
        queue.fail(store, job, end.reason)
    # Whatever the child managed to write before it ended (a `done` just before a kill) stands.
    final = queue.get_job(store, job.id)
    status = final.status.value if final is not None else "failed"
    return Outcome(job.id, "released" if status == JobStatus.QUEUED.value else status)


def _keep_rules(ctx: JobContext, reported: Any) -> None:
    if not isinstance(reported, list):
        return
    home = ctx.settings.home.resolve()
    for name in reported:
        path = Path(str(name))
        # Only compiled rule sets of the runner's own data directory: a child that read hostile input
        # must not be able to have its parent deserialise a file of its choosing.
        if not path.resolve().is_relative_to(home):
            continue
        try:
            ctx.rules.load(path)
        except Exception:  # the next job loads them itself; the runner must not fail for it
            log.warning("could not keep the rule set %s loaded", path, exc_info=True)


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


_KEEP_FUTURES = 10_000
"""Job ends an in-process runner remembers for `wait()` before it forgets those already ended."""


class _Crew:
    """The worker threads of one start of a runner, and how they are told to stop."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.draining = threading.Event()
        """Take no more jobs once none is waiting (a `shutdown(wait=True)`)."""
        self.abandon = threading.Event()
        """Take no more jobs; kill the running jobs' processes and queue their jobs again."""


class InProcessRunner:
    """Runs jobs from worker threads of this process (each job in a child process of its own, with
    limits: `tianmu.jobs.isolation`), with a housekeeping thread for leases and schedules.

    A dispatched job is not run in the order it was dispatched: each free worker claims the job that
    should run next across tenants (`queue.claim_next`: the tenant with the fewest running jobs, then
    the oldest job), among the jobs handed to this runner. Jobs left queued by a previous process are
    picked up on `start()`. The runner keeps one `RuleCache` (its own, or the one given) for every job
    it runs, as long as it lives.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        workers: int = 2,
        tick: float = 5.0,
        rules: RuleCache | None = None,
        kinds: Mapping[str, JobKind] | None = None,
    ) -> None:
        self.store, self.settings = store, settings
        # `is not None`: an empty cache has length 0 and is falsy.
        self.rules = rules if rules is not None else RuleCache()
        self.kinds = JOB_KINDS if kinds is None else kinds
        self.workers = workers
        self.tick = tick
        self._lock = threading.Condition()
        self._waiting: set[str] = set()
        """Dispatched, not yet claimed by this runner."""
        self._running: set[str] = set()
        self._crew: _Crew | None = None
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self.futures: dict[str, Future[Outcome]] = {}

    def dispatch(self, job_id: str) -> None:
        with self._lock:
            if len(self.futures) >= _KEEP_FUTURES:
                # A service runs jobs for months: forget the ends nobody waited for, not the pending.
                self.futures = {k: f for k, f in self.futures.items() if not f.done()}
            future = self.futures.get(job_id)
            if future is None or future.done():
                self.futures[job_id] = Future()
            self._waiting.add(job_id)
            self._ensure_crew()
            self._lock.notify()

    def _ensure_crew(self) -> None:
        # Made on first use and again after a shutdown, so one runner can serve an app started twice.
        if self._crew is None:
            self._crew = _Crew()
        crew = self._crew
        crew.threads = [t for t in crew.threads if t.is_alive()]
        while len(crew.threads) < self.workers:
            # Daemon threads: a service that exits does not wait for a job (its child ends with it).
            thread = threading.Thread(target=self._work, args=(crew,), name="tianmu-job", daemon=True)
            crew.threads.append(thread)
            thread.start()

    def _next(self, crew: _Crew, worker: str) -> Job | None:
        """The job this worker runs next (claimed), or None when the crew is told to stop."""
        lease = timedelta(seconds=self.settings.job_lease_seconds)
        with self._lock:
            while True:
                if crew.abandon.is_set() or (crew.draining.is_set() and not self._waiting):
                    return None
                if not self._waiting:
                    self._lock.wait(self.tick)
                    continue
                # Claimed under the lock: two workers of this runner never judge the same job at once.
                job = queue.claim_next(
                    self.store,
                    worker,
                    lease,
                    among=self._waiting,
                    max_attempts=self.settings.job_max_attempts,
                )
                if job is not None:
                    self._waiting.discard(job.id)
                    self._running.add(job.id)
                    return job
                # None of the waiting jobs can be claimed: each is finished, cancelled, or held by
                # another worker's live lease. Not ours to run, as `execute_job` says of such a job.
                for job_id in list(self._waiting):
                    self._waiting.discard(job_id)
                    if job_id not in self._running:
                        self._resolve(Outcome(job_id, "skipped"))

    def _resolve(self, outcome: Outcome) -> None:
        future = self.futures.get(outcome.job_id)
        if future is not None and not future.done():
            future.set_result(outcome)

    def _work(self, crew: _Crew) -> None:
        worker = worker_name("inproc")
        while True:
            try:
                job = self._next(crew, worker)
            except Exception:  # the database is away: try again in a while, the jobs stay queued
                log.exception("could not take the next job; trying again in %s s", self.tick)
                crew.abandon.wait(self.tick)
                continue
            if job is None:
                return
            try:
                outcome = run_claimed(
                    self.store,
                    self.settings,
                    job,
                    self.dispatch,
                    rules=self.rules,
                    kinds=self.kinds,
                    stopping=crew.abandon,
                )
            except Exception as exc:  # recording the end failed (the database): the reaper revives it
                log.exception("job %s: its end could not be recorded", job.id)
                outcome = Outcome(job.id, f"lost: {exc.__class__.__name__}")
            with self._lock:
                self._running.discard(job.id)
                self._resolve(outcome)

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
        """Stop. `wait`: run the dispatched jobs to their end first; otherwise kill the running jobs'
        processes and queue their jobs again (the next start takes them from the beginning)."""
        self._stop.set()
        with self._lock:
            crew, self._crew = self._crew, None
            if crew is not None:
                (crew.draining if wait else crew.abandon).set()
            self._lock.notify_all()
        if crew is not None:
            for thread in crew.threads:
                thread.join()
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
