"""Executing one claimed job: its heartbeat, its handler (in a child process with limits, or in this
thread), and the record of how it ended. `tianmu.jobs.runner` claims jobs and calls `run_claimed`.

A child is forked by the runner's fork server (`tianmu.jobs.forkserver`), not by this process: what it
runs is a `_JobWork`, sent pickled — the handler by reference, the job, the settings, the database URL
— and the child opens its own database connections from the URL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from tianmu.core.config import Settings
from tianmu.core.errors import TianmuError
from tianmu.jobs import queue
from tianmu.jobs.forkserver import PRELOAD, ForkServer
from tianmu.jobs.handlers import JOB_KINDS, Handler, JobContext, JobFailed, JobKind
from tianmu.jobs.isolation import ProcessLimits, Watch, can_isolate, run_in_child
from tianmu.jobs.models import Job, JobCancelled, JobStatus
from tianmu.malware.rulecache import RuleCache
from tianmu.store.database import Store
from tianmu.store.schema import jobs

__all__ = ["Dispatch", "Outcome", "run_claimed"]

log = logging.getLogger(__name__)

Dispatch = Callable[[str], None]
"""Hands a newly queued job id to the runner (in-process pool or Celery)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one delivery of a job ended, for whoever dispatched it (`InProcessRunner.wait`)."""

    job_id: str
    """The job."""
    status: str
    """`done`, `failed`, `cancelled`, `skipped` (not ours to run), `lost` (taken over meanwhile), or
    `released` (the runner stopped and gave the job back to the queue)."""
    rules_read: int = 0
    """Rule sets the job's process read from disk; the others it found loaded (by the fork server, or
    in this process's cache: with isolation off, concurrent jobs' reads are counted together)."""


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


def run_claimed(
    store: Store,
    settings: Settings,
    job: Job,
    dispatch: Dispatch,
    *,
    rules: RuleCache | None = None,
    kinds: Mapping[str, JobKind] | None = None,
    stopping: threading.Event | None = None,
    forks: ForkServer | None = None,
) -> Outcome:
    """Run a job this worker has claimed: in a child process with limits (`tianmu.jobs.isolation`),
    or in this thread when TIANMU_JOB_ISOLATION is off or the platform cannot fork.

    `forks`: the runner's fork server; None (a one-off run) starts one for this job only."""
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
        if not can_isolate(settings):
            before = ctx.rules.reads
            outcome = _run_handler(ctx, spec.run)
            return replace(outcome, rules_read=ctx.rules.reads - before)
        if forks is not None:
            return _isolated(ctx, spec.run, heartbeat, stopping or threading.Event(), forks)
        own = ForkServer({*PRELOAD, spec.run.__module__} - {"__main__"})
        try:
            return _isolated(ctx, spec.run, heartbeat, stopping or threading.Event(), own)
        finally:
            own.close()
    finally:
        heartbeat.stop.set()
        heartbeat.join()


def _run_handler(ctx: JobContext, handler: Handler, limits: ProcessLimits | None = None) -> Outcome:
    """The handler, and the job's end written as it ended (`limits`: those of the child it runs in)."""
    store, job = ctx.store, ctx.job
    try:
        result = handler(ctx)
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


@dataclass(frozen=True, slots=True)
class _JobWork:
    """A job's handler as its child runs it: everything it needs, by value, so that it pickles."""

    handler: Handler
    database_url: str
    settings: Settings
    job: Job
    lease: timedelta
    limits: ProcessLimits

    def __call__(self, to_parent: Dispatch, rules: RuleCache) -> dict[str, Any]:
        # A job the handler queues goes to the runner: it runs jobs, this process does not.
        store = Store(self.database_url, migrate=False)
        try:
            ctx = JobContext(
                store=store,
                settings=self.settings,
                job=self.job,
                lease=self.lease,
                dispatch=to_parent,
                rules=rules,
            )
            before = rules.reads
            outcome = _run_handler(ctx, self.handler, self.limits)
            return {
                "status": outcome.status,
                "rules": [str(path) for path in rules.paths()],
                "rules_read": rules.reads - before,
            }
        finally:
            store.close()


def _isolated(
    ctx: JobContext, handler: Handler, heartbeat: _Heartbeat, stopping: threading.Event, forks: ForkServer
) -> Outcome:
    """The handler in a child process under the job's limits; the job's end recorded however it ends.

    The child inherits the fork server's loaded rule sets (copy-on-write pages, at no cost); what it
    loads itself dies with it. So the child reports the rule files it used, and the fork server loads
    them after the job (from the runner's data directory only) for the next jobs' children.
    """
    store, job = ctx.store, ctx.job
    limits = ProcessLimits.of(ctx.settings)
    work = _JobWork(handler, store.url, ctx.settings, job, ctx.lease, limits)
    watch = Watch(
        cancelled=lambda: queue.cancel_requested(store, job.id),
        lost=lambda: heartbeat.lost,
        stopping=stopping,
        dispatch=ctx.dispatch,
    )
    end = run_in_child(work, limits, watch, forks)
    _keep_rules(ctx, forks, end.report.get("rules"))
    read = end.report.get("rules_read")
    rules_read = read if isinstance(read, int) else 0
    if end.status in ("done", "failed", "cancelled", "lost"):
        # The child wrote the job's end itself; or the lease was lost, and the job is another's.
        return Outcome(job.id, end.status, rules_read)
    if end.status == "stopped":
        queue.release(store, job)
    elif end.status == "cancel":
        queue.mark_cancelled(store, job)
    else:  # memory, timeout, killed, crashed
        log.warning("job %s (%s) failed: %s", job.id, job.kind, end.reason)
        queue.fail(store, job, end.reason)
    # Whatever the child managed to write before it ended (a `done` just before a kill) stands.
    final = queue.get_job(store, job.id)
    status = final.status.value if final is not None else "failed"
    return Outcome(job.id, "released" if status == JobStatus.QUEUED.value else status, rules_read)


def _keep_rules(ctx: JobContext, forks: ForkServer, reported: Any) -> None:
    if not isinstance(reported, list):
        return
    home = ctx.settings.home.resolve()
    # Only compiled rule sets of the runner's own data directory: a child that read hostile input
    # must not be able to have the fork server deserialise a file of its choosing.
    kept = [path for path in (Path(str(name)) for name in reported) if path.resolve().is_relative_to(home)]
    forks.load_rules(kept)
