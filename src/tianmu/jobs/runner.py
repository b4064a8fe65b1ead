"""Running jobs: one `execute_job` used by both runners, the in-process runner, and housekeeping.

`execute_job` claims the job, keeps its lease alive from a heartbeat thread, runs the handler in a
child process with the job's memory and time limits (`tianmu.jobs.isolation`; on this thread when
TIANMU_JOB_ISOLATION is off), and records how it ended. The in-process runner (default for `tianmu
serve` on one machine) runs jobs from worker threads, each taking the next job fairly across tenants
(`queue.claim_next`); the Celery runner (`tianmu.jobs.celery_app`) sends the job id to `tianmu worker`
processes on any number of machines, which run it through the same `execute_job`. Both share the
database, so `tianmu jobs list` sees all.

A runner owns what its jobs share for as long as it lives — its fork server (`ForkServer`, which forks
the jobs' processes and keeps the malware rule sets they load), and the loaded rule sets (`RuleCache`)
of the jobs it runs on its own threads when isolation is off — and hands them to every job it runs;
nothing of the kind is kept in a module.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select

from tianmu.core.config import Settings
from tianmu.jobs import queue
from tianmu.jobs.execute import Dispatch, Outcome, run_claimed
from tianmu.jobs.forkserver import PRELOAD, ForkServer
from tianmu.jobs.handlers import JOB_KINDS, JobKind, validate_params
from tianmu.jobs.isolation import can_isolate
from tianmu.jobs.models import Job, JobStatus
from tianmu.malware.rulecache import RuleCache
from tianmu.store.database import Store
from tianmu.store.schema import jobs

__all__ = [
    "InProcessRunner",
    "Outcome",
    "Runner",
    "execute_job",
    "fork_server_for",
    "periodic_jobs",
    "reap",
    "run_claimed",
    "submit_job",
    "worker_name",
]

log = logging.getLogger(__name__)


class Runner(Protocol):
    def dispatch(self, job_id: str) -> None:
        """Have the job executed (it is already queued in the database)."""
        ...


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
    forks: ForkServer | None = None,
) -> Outcome:
    """Run one job to its end if it is ours to run. Never raises for a job's own failure.

    `rules`: the runner's loaded rule sets, kept across its jobs; None (a one-off run) loads them for
    this job only. `kinds`: the job kinds this worker runs (default `JOB_KINDS`). `stopping`: set when
    the runner stops without waiting; a job in a child process is then killed and queued again.
    `forks`: the runner's fork server (`fork_server_for`); None starts one for this job only.
    """
    lease = timedelta(seconds=settings.job_lease_seconds)
    job = queue.claim(store, job_id, worker, lease, max_attempts=settings.job_max_attempts)
    if job is None:
        return Outcome(job_id, "skipped")
    return run_claimed(
        store, settings, job, dispatch, rules=rules, kinds=kinds, stopping=stopping, forks=forks
    )


def fork_server_for(kinds: Mapping[str, JobKind] | None = None) -> ForkServer:
    """A fork server that imports, before its first fork, the modules of these kinds' handlers."""
    known = JOB_KINDS if kinds is None else kinds
    # A handler of a script run as __main__ cannot be imported by name; its jobs fail with the reason.
    modules = [kind.run.__module__ for kind in known.values() if kind.run.__module__ != "__main__"]
    return ForkServer([*PRELOAD, *modules])


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


_ABANDON_SECONDS = 5.0
"""How long `shutdown(wait=False)` waits for the running jobs' processes to be killed and released."""
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
    it runs, as long as it lives, and one fork server (`ForkServer`, started on first use and
    stopped by `shutdown`), which forks its jobs' processes and keeps the rule sets they load.
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
        self.forks = fork_server_for(self.kinds)
        self.workers = workers
        self.tick = tick
        self._lock = threading.Condition()
        self._waiting: dict[str, int] = {}
        """Dispatched, not yet claimed by this runner: job id → number of its latest dispatch."""
        self._dispatches = itertools.count()
        self._claiming = threading.Lock()
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
            self._waiting[job_id] = next(self._dispatches)
            self._ensure_crew()
            self._lock.notify()

    def _ensure_crew(self) -> None:
        # Made on first use and again after a shutdown, so one runner can serve an app started twice.
        if self._crew is None:
            self._crew = _Crew()
            if can_isolate(self.settings):
                # With the first job, not at start: a service (or a test) that runs no job never pays
                # for the server's interpreter; in the background, its imports (~2 s) overlap the claim.
                threading.Thread(target=self._start_forks, name="tianmu-forks", daemon=True).start()
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
        # One claim at a time in this runner, so two of its workers never judge the same job at
        # once; but not under `_lock`, so a dispatch (an API request) never waits on the database.
        with self._claiming:
            while True:
                with self._lock:
                    if crew.abandon.is_set() or (crew.draining.is_set() and not self._waiting):
                        return None
                    if not self._waiting:
                        self._lock.wait(self.tick)
                        continue
                    candidates = dict(self._waiting)
                job = queue.claim_next(
                    self.store, worker, lease, among=candidates, max_attempts=self.settings.job_max_attempts
                )
                with self._lock:
                    if job is not None:
                        self._waiting.pop(job.id, None)
                        self._running.add(job.id)
                        return job
                    # None of them can be claimed: each is finished, cancelled, or held by another
                    # worker's live lease — not ours to run, as `execute_job` says of such a job.
                    # One dispatched again meanwhile (the reaper queued it again) is judged again.
                    for job_id, dispatched in candidates.items():
                        if self._waiting.get(job_id) == dispatched:
                            del self._waiting[job_id]
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
                    forks=self.forks,
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

    def _start_forks(self) -> None:
        try:
            self.forks.start()
        except Exception:  # the first job starts it again, and fails with the reason if it cannot
            log.exception("could not start the job fork server")

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
        """Stop. `wait`: run the dispatched jobs to their end first, and return once they have ended.
        Otherwise return at once: the running jobs' processes are killed and their jobs queued again
        (the next start takes them from the beginning); a job run in-thread (isolation off) ends
        when it ends, as a thread cannot be killed."""
        self._stop.set()
        with self._lock:
            crew, self._crew = self._crew, None
            if crew is not None:
                (crew.draining if wait else crew.abandon).set()
            self._lock.notify_all()
        if crew is not None:
            # Without waiting, still give the watchers a moment to kill their children and queue
            # the jobs again, before an exiting process takes the threads down mid-way.
            until = None if wait else time.monotonic() + _ABANDON_SECONDS
            for thread in crew.threads:
                thread.join(None if until is None else max(0.0, until - time.monotonic()))
        if self._housekeeper is not None:
            self._housekeeper.join()
            self._housekeeper = None
        # After the watchers: they have killed their children. A child still running (its watcher
        # past the wait above) is killed by the server as it ends.
        self.forks.close()


def _unfinished(store: Store) -> list[str]:
    with store.connect() as conn:
        rows = conn.execute(
            select(jobs.c.id)
            .where(jobs.c.status == JobStatus.QUEUED.value, jobs.c.cancel_requested.is_(False))
            .order_by(jobs.c.created)
        )
        return [row.id for row in rows]
