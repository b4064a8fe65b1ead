"""Jobs in child processes with limits: hungry, slow, silent and crashing jobs, made by the tests.

Before issue 21 the in-process runner ran every handler on a thread of the service: a job that
allocated without end took the service with it, one that never ended held a worker for ever, and a
cancel reached a running job only at its next progress step. Each test here failed on that code.
The hostile jobs are kinds of this module, handed to the runner (`kinds=`), not entries of JOB_KINDS;
they are module-level functions, as the fork server's children receive their work by reference.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tianmu.core.config import Settings
from tianmu.jobs import InProcessRunner, JobStatus, execute_job, get_job, queue
from tianmu.jobs.forkserver import ForkServer
from tianmu.jobs.handlers import JOB_KINDS, JobContext, JobKind
from tianmu.jobs.isolation import ProcessLimits, Watch, run_in_child
from tianmu.jobs.models import Job
from tianmu.malware.rulecache import RuleCache
from tianmu.store import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cli"
MIB = 1 << 20

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="job isolation forks")


def _any(params: dict[str, Any]) -> dict[str, Any]:
    return params


def _hungry(ctx: JobContext) -> dict[str, Any]:
    """Allocates (and touches) more than the job's memory limit, as a parser fed a bomb does."""
    wanted = int(ctx.job.params["mib"]) * MIB
    chunks = [bytearray(64 * MIB) for _ in range(wanted // (64 * MIB) + 1)]
    return {"allocated": sum(len(c) for c in chunks)}


def _sleepy(ctx: JobContext) -> dict[str, Any]:
    """Says where it runs (its pid and a worker it started), then never ends and never reports."""
    helper = subprocess.Popen(["sleep", "600"])
    ctx.progress(f"pids {os.getpid()} {helper.pid}")
    time.sleep(3600)
    return {}


def _where(ctx: JobContext) -> dict[str, Any]:
    return {"pid": os.getpid()}


def _segfault(ctx: JobContext) -> dict[str, Any]:
    faulthandler.disable()  # pytest's handler would print this child's stack into the test output
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(60)
    return {}


_HELD = threading.Lock()
"""Held by a thread of the test's process while a job runs, as a C library's lock by a thread of the
service: a job's process forked from this process would inherit it held."""


def _locked(ctx: JobContext) -> dict[str, Any]:
    # A guard, not a timing: an inherited held lock is never released, so waiting longer changes nothing.
    acquired = _HELD.acquire(timeout=5)
    return {"acquired": acquired, "parent_threads": len(os.listdir(f"/proc/{os.getppid()}/task"))}


def _open_files(ctx: JobContext) -> dict[str, Any]:
    """The files the job's process has open as its handler starts (it has not used the database yet)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # the listing's own descriptor, closed meanwhile
    return {"open": targets}


KINDS = {
    **JOB_KINDS,
    "files": JobKind("files", "says which files its process has open", _any, _open_files),
    "hungry": JobKind("hungry", "allocates without end", _any, _hungry),
    "sleepy": JobKind("sleepy", "never ends, never reports", _any, _sleepy),
    "where": JobKind("where", "says which process ran it", _any, _where),
    "segfault": JobKind("segfault", "dies of a signal", _any, _segfault),
    "locked": JobKind("locked", "takes a lock another thread holds", _any, _locked),
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", database_url="unused", job_lease_seconds=5)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "target", tmp_path / "target"))


def _address_space_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) // 1024
    pytest.skip("no /proc/self/status: cannot size a memory limit above this process")
    raise AssertionError  # unreachable


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def _running(store: Store, job: Job, timeout: float = 30) -> Job:
    """The job once its handler has said where it runs (its progress)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = get_job(store, job.id)
        if current is not None and current.progress.startswith("pids "):
            return current
        time.sleep(0.05)
    raise AssertionError(f"job {job.id} never started")


def test_a_job_past_its_memory_limit_fails_and_the_runner_goes_on(
    sqlite_store: Store, settings: Settings, target: Path
) -> None:
    # The limit is on the child's whole address space, the part inherited from this process included.
    limit = _address_space_mib() + 512
    limited = replace(settings, job_memory_mb=limit)
    runner = InProcessRunner(sqlite_store, limited, workers=1, kinds=KINDS)
    try:
        hungry, _ = queue.submit(sqlite_store, "hungry", {"mib": limit + 256})
        runner.dispatch(hungry.id)
        assert runner.wait(hungry.id, 60).status == "failed"
        assess, _ = queue.submit(sqlite_store, "assess", {"path": str(target), "engines": []})
        runner.dispatch(assess.id)
        assert runner.wait(assess.id, 60).status == "done"
    finally:
        runner.shutdown()
    failed = get_job(sqlite_store, hungry.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == f"exceeded its memory limit of {limit} MiB (TIANMU_JOB_MEMORY_MB)"
    done = get_job(sqlite_store, assess.id)
    assert done is not None and done.status is JobStatus.DONE


def test_a_job_past_its_time_limit_is_killed_with_its_workers(
    sqlite_store: Store, settings: Settings
) -> None:
    runner = InProcessRunner(sqlite_store, replace(settings, job_timeout_seconds=2), workers=1, kinds=KINDS)
    try:
        job, _ = queue.submit(sqlite_store, "sleepy", {})
        runner.dispatch(job.id)
        pids = [int(p) for p in _running(sqlite_store, job).progress.split()[1:]]
        assert runner.wait(job.id, 60).status == "failed"
    finally:
        runner.shutdown()
    failed = get_job(sqlite_store, job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == "exceeded its time limit of 2 s (TIANMU_JOB_TIMEOUT_SECONDS)"
    assert os.getpid() not in pids
    deadline = time.monotonic() + 10  # the kernel reaps the killed worker when init takes it over
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def test_cancel_ends_a_job_that_never_reports_progress(sqlite_store: Store, settings: Settings) -> None:
    runner = InProcessRunner(sqlite_store, settings, workers=1, kinds=KINDS)
    try:
        job, _ = queue.submit(sqlite_store, "sleepy", {})
        runner.dispatch(job.id)
        pids = [int(p) for p in _running(sqlite_store, job).progress.split()[1:]]
        queue.cancel(sqlite_store, job.id, "default")
        # The handler sleeps an hour without a progress step: only a kill ends it within the wait.
        assert runner.wait(job.id, 30).status == "cancelled"
    finally:
        runner.shutdown()
    cancelled = get_job(sqlite_store, job.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def test_a_job_killed_by_a_signal_is_failed_naming_it(sqlite_store: Store, settings: Settings) -> None:
    job, _ = queue.submit(sqlite_store, "segfault", {})
    # `execute_job` is what a `tianmu worker` (Celery) runs: the same isolation.
    outcome = execute_job(sqlite_store, settings, job.id, "celery@test", lambda _id: None, kinds=KINDS)
    assert outcome.status == "failed"
    failed = get_job(sqlite_store, job.id)
    assert failed is not None and failed.error == "the job's process was killed by SIGSEGV"


def test_handlers_run_in_a_child_unless_isolation_is_off(sqlite_store: Store, settings: Settings) -> None:
    ran_in: dict[bool, int] = {}
    for isolation in (True, False):
        job, _ = queue.submit(sqlite_store, "where", {})
        chosen = replace(settings, job_isolation=isolation)
        outcome = execute_job(sqlite_store, chosen, job.id, "w", lambda _id: None, kinds=KINDS)
        assert outcome.status == "done"
        done = get_job(sqlite_store, job.id)
        assert done is not None and done.result is not None
        ran_in[isolation] = done.result["pid"]
    assert ran_in[False] == os.getpid()  # TIANMU_JOB_ISOLATION=0: in this process, as before
    assert ran_in[True] != os.getpid()  # the service process never runs (parses) a job itself


def test_a_runner_that_stops_without_waiting_gives_its_running_job_back(
    sqlite_store: Store, settings: Settings
) -> None:
    runner = InProcessRunner(sqlite_store, settings, workers=1, kinds=KINDS)
    job, _ = queue.submit(sqlite_store, "sleepy", {})
    runner.dispatch(job.id)
    _running(sqlite_store, job)
    runner.shutdown(wait=False)  # as the service does when it stops
    assert runner.wait(job.id, 30).status == "released"
    again = get_job(sqlite_store, job.id)
    assert again is not None and again.status is JobStatus.QUEUED and again.attempts == 0


_SLEEPY_KIND = """
import os, time

def sleepy(ctx):
    ctx.progress(f"pids {os.getpid()}")
    time.sleep(3600)
    return {}
"""

_PARENT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from sleepy_kind import sleepy
from tianmu.core.config import Settings
from tianmu.jobs import execute_job, queue
from tianmu.jobs.handlers import JOB_KINDS, JobKind
from tianmu.store import Store

store = Store(sys.argv[1])
settings = Settings(home=Path(sys.argv[2]), database_url=sys.argv[1], job_lease_seconds=5)
job, _ = queue.submit(store, "sleepy", {})
kinds = {**JOB_KINDS, "sleepy": JobKind("sleepy", "", lambda p: p, sleepy)}
execute_job(store, settings, job.id, "doomed", lambda _id: None, kinds=kinds)
"""


def test_a_jobs_process_ends_when_its_runner_is_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = Store(url)
    # The kind in a module of its own: a handler of `python -c` cannot be imported by the job's process.
    (tmp_path / "sleepy_kind.py").write_text(_SLEEPY_KIND)
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, url, str(tmp_path / "home"), str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        child = None
        while child is None and time.monotonic() < deadline and parent.poll() is None:
            for job in queue.list_jobs(store, "default"):
                if job.progress.startswith("pids "):
                    child = int(job.progress.split()[1])
            time.sleep(0.05)
        assert child is not None and child != parent.pid
    finally:
        parent.send_signal(signal.SIGKILL)  # no clean-up runs: as `kill -9` of the service
        parent.wait()
        store.close()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_jobs_process_inherits_no_lock_held_by_the_runners_threads(
    sqlite_store: Store, settings: Settings
) -> None:
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with _HELD:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    runner = InProcessRunner(sqlite_store, settings, workers=1, kinds=KINDS)
    try:
        job, _ = queue.submit(sqlite_store, "locked", {})
        runner.dispatch(job.id)
        assert runner.wait(job.id, 60).status == "done"
    finally:
        release.set()
        holder.join()
        runner.shutdown()
    done = get_job(sqlite_store, job.id)
    assert done is not None and done.result is not None
    # Forked from this process, the job would have found the lock held for ever; its process was
    # forked by the fork server, which has one thread (this process has the holder's, the runner's...).
    assert done.result == {"acquired": True, "parent_threads": 1}


def _no_cancel() -> bool:
    return False


def _report_and_queue(dispatch: Callable[[str], None], rules: RuleCache) -> dict[str, Any]:
    dispatch("job-1")
    dispatch("job-2")
    return {"status": "done", "rules": ["/data/a.yarc"], "pid": os.getpid(), "loaded": len(rules)}


def _leave(_dispatch: Callable[[str], None], _rules: RuleCache) -> dict[str, Any]:
    raise SystemExit("bye")


def _vanish(_dispatch: Callable[[str], None], _rules: RuleCache) -> dict[str, Any]:
    os._exit(7)


@pytest.fixture
def forks() -> Any:
    server = ForkServer([__name__])
    yield server
    server.close()


def test_a_child_reports_its_end_and_the_jobs_it_queued(forks: ForkServer) -> None:
    handed: list[str] = []
    end = run_in_child(
        _report_and_queue, ProcessLimits(), Watch(cancelled=_no_cancel, dispatch=handed.append), forks
    )
    assert end.status == "done" and end.report["rules"] == ["/data/a.yarc"] and end.report["loaded"] == 0
    assert end.report["pid"] != os.getpid() and handed == ["job-1", "job-2"]


def test_a_child_that_raises_or_exits_is_a_located_failure(forks: ForkServer) -> None:
    end = run_in_child(_leave, ProcessLimits(), Watch(cancelled=_no_cancel), forks)
    assert (end.status, end.reason) == ("crashed", "internal error in the job's process: SystemExit: bye")
    end = run_in_child(_vanish, ProcessLimits(), Watch(cancelled=_no_cancel), forks)
    assert (end.status, end.reason) == (
        "crashed",
        "the job's process ended with exit code 7 before it reported",
    )


def test_work_that_cannot_reach_a_process_is_a_located_failure(forks: ForkServer) -> None:
    # A closure does not pickle: it cannot be sent to a process that was not forked from this one.
    end = run_in_child(lambda _d, _r: {"status": "done"}, ProcessLimits(), Watch(cancelled=_no_cancel), forks)
    assert end.status == "crashed" and end.reason.startswith("the job's work cannot be sent to its process")


def test_a_dead_fork_server_fails_its_running_job_and_the_next_job_starts_another(
    sqlite_store: Store, settings: Settings
) -> None:
    runner = InProcessRunner(sqlite_store, settings, workers=1, kinds=KINDS)
    try:
        job, _ = queue.submit(sqlite_store, "sleepy", {})
        runner.dispatch(job.id)
        pids = [int(p) for p in _running(sqlite_store, job).progress.split()[1:]]
        server = runner.forks.pid
        assert server is not None
        os.kill(server, signal.SIGKILL)
        assert runner.wait(job.id, 60).status == "failed"
        after, _ = queue.submit(sqlite_store, "where", {})
        runner.dispatch(after.id)
        assert runner.wait(after.id, 60).status == "done"
        assert runner.forks.pid not in (None, server)
    finally:
        runner.shutdown()
    failed = get_job(sqlite_store, job.id)
    assert failed is not None and failed.error == (
        "the job fork server ended before the job's process reported"
    )
    # The job's process ends with its server (die_with_parent), and the runner ends its group.
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def test_a_jobs_process_holds_nothing_of_the_runners(sqlite_store: Store, settings: Settings) -> None:
    database = sqlite_store.engine.url.database
    assert database is not None
    job, _ = queue.submit(sqlite_store, "files", {})
    # This process holds the database open (its pool); forked from it, the job's process would too.
    with sqlite_store.connect():
        ours = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
        assert os.path.realpath(database) in ours
        outcome = execute_job(sqlite_store, settings, job.id, "w", lambda _id: None, kinds=KINDS)
    assert outcome.status == "done"
    done = get_job(sqlite_store, job.id)
    assert done is not None and done.result is not None
    assert not [name for name in done.result["open"] if name.startswith(os.path.realpath(database))]
