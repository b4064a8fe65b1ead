"""Benchmark of the distributed job runners: job throughput with 1 and with 2 `tianmu worker` processes.

Run: `.venv/bin/python bench/bench_jobs.py` (needs PostgreSQL at 127.0.0.1:5432/test and Redis at
127.0.0.1:6379, as on this machine kind; override with TIANMU_TEST_POSTGRES_URL / TIANMU_TEST_REDIS_URL).
Writes bench/results/bench_jobs.json.

Each round: a fresh PostgreSQL schema with the demo knowledge base, N `tianmu worker --concurrency 1`
processes on a fresh queue, JOBS assessment jobs of the demo target (vulnerability engine) submitted at
once; the time from the first submission to the last job done gives jobs/s. Worker start-up is not
counted (the round starts when every worker has taken one warm-up job).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

from tianmu.core.config import Settings
from tianmu.jobs import submit_job
from tianmu.jobs.celery_app import CeleryRunner, create_celery
from tianmu.road.knowledge import import_any
from tianmu.store.database import Store
from tianmu.store.knowledge import KbContext
from tianmu.store.schema import jobs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
POSTGRES_URL = os.environ.get("TIANMU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TIANMU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
JOBS = 300


def _done(store: Store) -> int:
    with store.connect() as conn:
        count = conn.execute(select(func.count()).select_from(jobs).where(jobs.c.status == "done")).scalar()
    return int(count or 0)


def _round(workers: int, tmp: Path) -> dict[str, Any]:
    schema = f"tianmu_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    queue_name = f"tianmu-bench-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "TIANMU_DATABASE_URL": url,
        "TIANMU_HOME": str(tmp / f"home-{workers}"),
        "TIANMU_BROKER_URL": REDIS_URL,
        "TIANMU_JOB_QUEUE": queue_name,
    }
    settings = Settings.from_env(env)
    store = Store(url)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        import_any(KbContext(store=store, home=settings.home), ROOT / "demo" / "kb")
        target = Path(shutil.copytree(ROOT / "demo" / "target", tmp / f"target-{workers}"))
        for n in range(workers):
            command = [sys.executable, "-c", "from tianmu.cli.main import run; run()", "worker"]
            command += ["--concurrency", "1", "--loglevel", "WARNING"]
            processes.append(
                subprocess.Popen(
                    command,
                    env={**env, "TIANMU_WORKER_NAME": f"bench{n}"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        runner = CeleryRunner(create_celery(settings))
        params = {"path": str(target), "engines": ["vulnerability"]}
        for _ in range(workers * 2):  # warm-up: every worker has started and loaded its caches
            submit_job(store, runner, "assess", params)
        while _done(store) < workers * 2:
            time.sleep(0.05)
        start = time.perf_counter()
        for _ in range(JOBS):
            submit_job(store, runner, "assess", params)
        while _done(store) < workers * 2 + JOBS:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        return {
            "workers": workers,
            "jobs": JOBS,
            "seconds": round(elapsed, 2),
            "jobs_per_s": round(JOBS / elapsed, 1),
        }
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        store.close()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
        create_engine(POSTGRES_URL).connect().close()
    except Exception as exc:
        print(f"PostgreSQL or Redis not reachable: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [_round(1, Path(tmp)), _round(2, Path(tmp))]
    result = {
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "speedup_2_vs_1": round(rounds[1]["jobs_per_s"] / rounds[0]["jobs_per_s"], 2),
    }
    for r in rounds:
        print(f"{r['workers']} worker(s): {r['jobs']} jobs in {r['seconds']} s = {r['jobs_per_s']} jobs/s")
    print(f"speed-up with 2 workers: {result['speedup_2_vs_1']}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_jobs.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
