"""The Celery side: `tianmu worker` processes that run jobs sent through Redis or RabbitMQ.

The broker carries only job ids; the shared database (PostgreSQL at scale) holds the jobs. Messages
are acknowledged late (after the job ends) and one at a time per process, so a killed worker's job
stays with the broker; independently, the lease reaper in every worker queues again any job whose
worker stopped renewing its lease, so recovery does not wait on the broker's redelivery timeout (an
hour by default on Redis). Whichever delivery comes second finds the job done and does nothing.

Each job runs as with the in-process runner (`runner.execute_job`): in a child process of its own, with
the job's memory and time limits, killed on a cancel, and ending with its pool process. The child is
forked by the pool process's fork server (`ForkServer`, started at its first job by exec of a fresh
interpreter), never by the pool process itself.

Each worker process keeps one fork server, which keeps the malware rule sets its jobs' processes
loaded (they report the files), and one `RuleCache` for jobs run in the process when isolation is off:
the Celery app owns both, as it owns the process's store. A prefork child starts a fork server of its
own (the parent's handle forgets its server at a fork).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery

from tianmu.core.config import Settings
from tianmu.jobs import runner
from tianmu.malware.rulecache import RuleCache
from tianmu.store.database import Store, open_store

__all__ = ["RUN_JOB", "CeleryRunner", "create_celery", "start_housekeeping"]

log = logging.getLogger(__name__)

RUN_JOB = "tianmu.run_job"
SUBMIT_PERIODIC = "tianmu.submit_periodic"


class _ProcessStore:
    """One Store per OS process: a prefork pool child must not share the parent's connections.

    The worker's main process runs the lease reaper in a thread; if the pool forks a child while that
    thread holds this object's lock, the child would inherit a lock nobody will ever release. So a
    forked child starts with a fresh lock and no store (`os.register_at_fork`).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._store = None

    def get(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store


def create_celery(settings: Settings) -> Celery:
    app = Celery("tianmu", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # Redelivery of an unacknowledged message after this long; jobs longer than it are safe
        # anyway (a second delivery finds the job held by a live lease and is dropped).
        broker_transport_options={"visibility_timeout": 3600},
        task_default_queue=settings.job_queue,
    )
    stores = _ProcessStore(settings)
    rules = RuleCache()
    forks = runner.fork_server_for()
    celery_runner = CeleryRunner(app)
    # How this worker signs the jobs it holds (`tianmu jobs show`); TIANMU_WORKER_NAME names a machine.
    label = os.environ.get("TIANMU_WORKER_NAME") or "celery"

    @app.task(name=RUN_JOB, ignore_result=True)
    def run_job(job_id: str) -> str:
        outcome = runner.execute_job(
            stores.get(),
            settings,
            job_id,
            runner.worker_name(label),
            celery_runner.dispatch,
            rules=rules,
            forks=forks,
        )
        return outcome.status

    @app.task(name=SUBMIT_PERIODIC, ignore_result=True)
    def submit_periodic() -> list[str]:
        submitted = []
        for kind, params, key in runner.periodic_jobs(settings):
            job, _ = runner.submit_job(
                stores.get(), celery_runner, kind, params, idempotency_key=key, submitted_by="schedule"
            )
            submitted.append(job.id)
        return submitted

    schedule: dict[str, Any] = {}
    periods = [h for h in (settings.kb_update_hours, settings.reassess_hours) if h > 0]
    if periods:
        # Ticking more often than the shortest period is harmless: the idempotency key of each period
        # makes every tick after the first a no-op.
        schedule["tianmu-periodic"] = {"task": SUBMIT_PERIODIC, "schedule": min(periods) * 3600 / 4}
    app.conf.beat_schedule = schedule
    app.conf.tianmu_stores = stores
    app.conf.tianmu_rules = rules
    app.conf.tianmu_forks = forks
    return app


class CeleryRunner:
    """Dispatches jobs to Celery workers (what `tianmu serve --workers celery` and the API use)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, job_id: str) -> None:
        self.app.send_task(RUN_JOB, args=[job_id])


def start_housekeeping(app: Celery, settings: Settings, interval: float) -> threading.Event:
    """The lease reaper, in the worker's main process; returns the event that stops it."""
    stop = threading.Event()
    stores: _ProcessStore = app.conf.tianmu_stores
    dispatcher = CeleryRunner(app)

    def loop() -> None:
        while not stop.wait(interval):
            try:
                runner.reap(stores.get(), dispatcher.dispatch, max_attempts=settings.job_max_attempts)
            except Exception:
                log.exception("lease reaper failed; trying again in %s s", interval)

    threading.Thread(target=loop, name="tianmu-reaper", daemon=True).start()
    return stop
