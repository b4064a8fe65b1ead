"""Two `tianmu worker` processes on Redis and PostgreSQL: 200 jobs, one killed mid-job, each job done once.

This is the scale path of DESIGN.md run for real: the workers are separate processes started the way
an operator starts them, the broker is the machine's Redis, the database a PostgreSQL schema of the
test's own. A worker is killed with SIGKILL (its whole process group, pool child included) while it
holds a job; the survivor's lease reaper must revive that job, and no assessment may be stored twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tianmu.core.config import Settings
from tianmu.jobs import JobStatus, list_jobs, submit_job
from tianmu.jobs.celery_app import CeleryRunner, create_celery
from tianmu.road.knowledge import import_any
from tianmu.store import Store
from tianmu.store.knowledge import KbContext
from tianmu.store.schema import assessments, jobs

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
JOBS = 200


class Worker:
    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = (logs / f"worker-{name}.log").open("w")
        command = [sys.executable, "-c", "from tianmu.cli.main import run; run()", "worker"]
        command += ["--concurrency", "1", "--reap-interval", "1", "--loglevel", "WARNING"]
        self.process = subprocess.Popen(
            command,
            env={**env, "TIANMU_WORKER_NAME": name},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches the pool child too
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.log.close()


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(folder.glob("worker-*.log")))


def _running_on(store: Store, name: str) -> str | None:
    with store.connect() as conn:
        return conn.execute(
            select(jobs.c.id).where(jobs.c.status == "running", jobs.c.worker.like(f"{name}@%")).limit(1)
        ).scalar()


def _count(store: Store, status: str) -> int:
    with store.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(jobs).where(jobs.c.status == status)).scalar() or 0
        )


def test_killed_worker_loses_nothing_and_duplicates_nothing(
    postgres_store: Store, redis_url: str, tmp_path: Path
) -> None:
    import redis

    store = postgres_store
    queue_name = f"tianmu-test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "TIANMU_DATABASE_URL": store.url,
        "TIANMU_HOME": str(tmp_path / "home"),
        "TIANMU_BROKER_URL": redis_url,
        "TIANMU_JOB_QUEUE": queue_name,
        "TIANMU_JOB_LEASE_SECONDS": "3",
    }
    settings = Settings.from_env(env)
    import_any(KbContext(store=store, home=settings.home), REPO / "demo" / "kb")
    target = Path(shutil.copytree(REPO / "demo" / "target", tmp_path / "target"))

    workers = [Worker("A", env, tmp_path), Worker("B", env, tmp_path)]
    client = redis.Redis.from_url(redis_url)
    try:
        runner = CeleryRunner(create_celery(settings))
        for n in range(JOBS):
            submit_job(
                store,
                runner,
                "assess",
                {"path": str(target), "engines": ["vulnerability"]},
                idempotency_key=f"job-{n}",
            )

        # Kill a worker while it holds a job: wait until it is seen running one, kill it, and check
        # the job was indeed still unfinished (else start that worker again and try once more).
        victim: str | None = None
        killed = ""
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            held = _running_on(store, workers[0].name)
            if held is None:
                time.sleep(0.01)
                continue
            workers[0].kill()
            with store.connect() as conn:
                status = conn.execute(select(jobs.c.status).where(jobs.c.id == held)).scalar()
            if status == "running":
                victim, killed = held, workers[0].name
            else:
                workers[0] = Worker(f"A{time.monotonic_ns()}", env, tmp_path)
        counts = {status: _count(store, status) for status in ("queued", "running", "done", "failed")}
        assert victim is not None, f"worker A never held an unfinished job; jobs: {counts}\n" + _logs(
            tmp_path
        )

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and _count(store, "done") < JOBS:
            if _count(store, "failed"):
                break
            time.sleep(0.5)

        every = list_jobs(store, "default", limit=JOBS + 10)
        assert len(every) == JOBS
        assert {j.status for j in every} == {JobStatus.DONE}, (
            [j.error for j in every if j.error][:3],
            _logs(tmp_path),
        )
        revived = next(j for j in every if j.id == victim)
        assert revived.attempts >= 2 and revived.worker is not None
        assert not revived.worker.startswith(f"{killed}@")
        with store.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(assessments)).scalar()
        assert stored == JOBS
        assert len({j.result["assessment_id"] for j in every if j.result}) == JOBS
    finally:
        for worker in workers:
            worker.kill()
        client.delete(queue_name)
