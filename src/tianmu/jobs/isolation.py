"""One job's handler in a child process with memory and time limits, watched by the runner's thread.

The service (dashboard, API, every tenant) and `tianmu worker` never parse what a job reads: an
upload's SBOM or log is read in a child forked for that job, whose address space is limited to
`TIANMU_JOB_MEMORY_MB` (RLIMIT_AS, the inherited part of the parent's included) and whose wall-clock
time is limited to `TIANMU_JOB_TIMEOUT_SECONDS`. The parent keeps the job's lease alive, looks at the
job's cancel flag about every second, and kills the child's process group (the child and any workers
it forked) when the job is cancelled, runs out of time, loses its lease, or the runner stops. A child
ends with its parent (`die_with_parent`), so a `kill -9` of the service leaves no job running.

Hand-written over `os.fork` rather than `multiprocessing.Process`: a job's child must itself fork
workers (the log pass, the scan pool), which a daemonic Process may not, while a non-daemonic one is
joined at the parent's exit (a service shutdown would wait hours for a job); and the child must lead
a process group of its own so that one kill reaches its workers too.

Forking a process that runs threads (uvicorn's, the other jobs' watchers) is safe here because the
child touches only what is made fresh for it: the database pool (the caller's `prepare` disposes the
engine without closing the parent's connections), the loaded rule sets' lock (`RuleCache.after_fork`)
and logging (whose locks Python re-creates at fork). A C library lock held by another thread at the
moment of the fork could still hang the child before it starts (SQLite's allocator mutex): so the child
says when it is ready, and one that does not within START_SECONDS is killed and forked again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tianmu.core.config import Settings
from tianmu.core.forking import die_with_parent

__all__ = [
    "CHECK_SECONDS",
    "START_SECONDS",
    "ChildEnd",
    "ProcessLimits",
    "Watch",
    "can_isolate",
    "run_in_child",
]

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
"""How often the parent asks whether the job was cancelled (one small SELECT)."""
START_SECONDS = 10.0
"""A child that has not said it is ready by then hangs on a lock inherited from the parent."""
_POLL_SECONDS = 0.1
_READY = b"R\n"
_DISPATCH = b"D "
_REPORT_LIMIT = 1 << 20
"""Bytes of report the parent reads from a child (a list of rule files, a status): more is a bug."""
_MEMORY_EXIT = 3
_MEMORY_REPORT = b'{"status": "memory"}\n'
"""Encoded beforehand: after a MemoryError the child may not be able to build a string."""


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    """What one job's process may use; 0 is unbounded."""

    memory_mb: int = 4096
    """The child's address space (RLIMIT_AS) in MiB: `TIANMU_JOB_MEMORY_MB`."""
    timeout_seconds: float = 6 * 3600.0
    """Wall-clock seconds from the fork to the kill: `TIANMU_JOB_TIMEOUT_SECONDS`."""

    @classmethod
    def of(cls, settings: Settings) -> ProcessLimits:
        return cls(memory_mb=settings.job_memory_mb, timeout_seconds=settings.job_timeout_seconds)

    def memory_reason(self) -> str:
        return f"exceeded its memory limit of {self.memory_mb} MiB (TIANMU_JOB_MEMORY_MB)"

    def time_reason(self) -> str:
        return f"exceeded its time limit of {_duration(self.timeout_seconds)} (TIANMU_JOB_TIMEOUT_SECONDS)"


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def can_isolate(settings: Settings) -> bool:
    """Jobs run in a child process unless TIANMU_JOB_ISOLATION is off or the platform cannot fork."""
    return settings.job_isolation and hasattr(os, "fork") and hasattr(os, "killpg")


@dataclass(slots=True)
class Watch:
    """What the parent watches while the child runs, besides the child itself."""

    cancelled: Callable[[], bool]
    """True once a cancel was asked (read every CHECK_SECONDS)."""
    lost: Callable[[], bool] = lambda: False
    """True once the lease was lost (another worker holds the job): the child must stop."""
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the runner stops without waiting (service shutdown): the child is killed."""
    dispatch: Callable[[str], None] = lambda _job_id: None
    """Hands the runner a job the child queued (a `reassess` queues one per asset), as it is queued."""


@dataclass(frozen=True, slots=True)
class ChildEnd:
    """How a child ended.

    `status`: the child's own report (`done`, `failed`, `cancelled`, `lost`: it wrote the job's end
    itself), or what the parent saw: `memory`, `timeout`, `cancel` (killed on a cancel), `lost`,
    `stopped` (the runner stopped), `stalled` (never ready), `killed` (by a signal), `crashed`.
    """

    status: str
    reason: str = ""
    """For the ends the parent records: why, in words for the job's error."""
    report: dict[str, Any] = field(default_factory=dict)
    """What the child reported besides its status (the rule files it loaded)."""


Work = Callable[[Callable[[str], None]], dict[str, Any]]
"""The child's work: given a `dispatch` that hands job ids to the parent's runner, it returns its
report."""


def run_in_child(
    work: Work,
    limits: ProcessLimits,
    watch: Watch,
    *,
    prepare: Callable[[], None] = lambda: None,
    start_seconds: float = START_SECONDS,
) -> ChildEnd:
    """Fork, run `prepare()` then `work(dispatch)` in the child under `limits`, and watch it to its end.

    `work` returns the child's report (JSON-ready, with a `status`); it does its own writes to the
    database. The child talks to the parent through one pipe, a line at a time: ready, each job it
    dispatches, then its report. Never raises for what happens in the child.
    """
    _warn_when_inheriting_most_of(limits)
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child(work, prepare, limits, write_end, parent)
    os.close(write_end)
    # Also here: the parent may kill the group before the child has run its own setpgid (an error
    # means the child did it first, or has already ended).
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    try:
        return _watch(pid, read_end, limits, watch, start_seconds)
    finally:
        os.close(read_end)


def _address_space_mib() -> int | None:
    """This process's address space (VmSize) in MiB, where /proc says it."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") >> 20


def _warn_when_inheriting_most_of(limits: ProcessLimits) -> None:
    # RLIMIT_AS counts what the child inherits (the parent's heap, its threads' stacks and malloc
    # arenas): a runner grown close to the limit leaves its jobs little, and that must be visible.
    if limits.memory_mb <= 0:
        return
    inherited = _address_space_mib()
    if inherited is not None and inherited > limits.memory_mb * 3 // 4:
        log.warning(
            "this process's address space (%s MiB) is most of the job memory limit (%s MiB, "
            "TIANMU_JOB_MEMORY_MB): its jobs inherit it and may fail early; raise the limit",
            inherited,
            limits.memory_mb,
        )


def _child(
    work: Work,
    prepare: Callable[[], None],
    limits: ProcessLimits,
    write_end: int,
    parent: int,
) -> None:
    code = 1
    try:
        os.setpgid(0, 0)
        die_with_parent(parent)
        # The parent's handlers (uvicorn's, Celery's) are not the job's: a signal ends the job.
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        if limits.memory_mb > 0:
            size = limits.memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        prepare()
        os.write(write_end, _READY)
        report = work(lambda job_id: _send(write_end, _DISPATCH + job_id.encode("ascii", "replace") + b"\n"))
        _send(write_end, json.dumps(report).encode("utf-8") + b"\n")
        code = 0
    except MemoryError:
        _send(write_end, _MEMORY_REPORT)
        code = _MEMORY_EXIT
    except BaseException as exc:  # reported to the parent, which records it on the job
        try:
            message = f"{exc.__class__.__name__}: {exc}"
            _send(write_end, json.dumps({"status": "crashed", "reason": message}).encode("utf-8") + b"\n")
        except BaseException:
            pass  # nothing more can be said: the parent records the exit code
    finally:
        for stream in (sys.stdout, sys.stderr):
            # A closed or broken stream must not change how the child ends.
            with contextlib.suppress(BaseException):
                stream.flush()
        # Skip the parent's atexit handlers and finalisers inherited at fork (its database pool).
        os._exit(code)


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _watch(pid: int, read_end: int, limits: ProcessLimits, watch: Watch, start_seconds: float) -> ChildEnd:
    started = time.monotonic()
    deadline = started + limits.timeout_seconds if limits.timeout_seconds > 0 else None
    next_check = started + CHECK_SECONDS
    lines = _Lines(watch.dispatch)
    # poll, not select: a busy service's descriptors pass select's limit of 1024.
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    open_ = True
    while True:
        if not open_:
            time.sleep(_POLL_SECONDS)
        elif poller.poll(_POLL_SECONDS * 1000):
            chunk = os.read(read_end, 65536)
            if not chunk:  # every writer closed: the child is ending; wait for it without spinning
                poller.unregister(read_end)
                open_ = False
            lines.feed(chunk)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            lines.feed(_drain(read_end))
            lines.feed(b"\n")
            return _ended(status, lines.report, limits)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            _kill(pid)
            return ChildEnd("timeout", limits.time_reason())
        if not lines.ready and now - started >= start_seconds:
            _kill(pid)
            return ChildEnd("stalled", f"the job's process did not start within {start_seconds:g} s")
        if watch.stopping.is_set():
            _kill(pid)
            return ChildEnd("stopped", "the runner stopped")
        if watch.lost():
            _kill(pid)
            return ChildEnd("lost", "another worker holds the job")
        if now >= next_check:
            next_check = now + CHECK_SECONDS
            try:
                cancelled = watch.cancelled()
            except Exception:  # a database hiccup: ask again at the next check
                cancelled = False
            if cancelled:
                _kill(pid)
                return ChildEnd("cancel", "cancelled")


class _Lines:
    """The child's messages, a line each: ready, `D <job id>` (dispatched at once), the report."""

    def __init__(self, dispatch: Callable[[str], None]) -> None:
        self.dispatch = dispatch
        self.ready = False
        self.report = b""
        self._partial = bytearray()

    def feed(self, data: bytes) -> None:
        self._partial += data
        while (end := self._partial.find(b"\n")) >= 0:
            line = bytes(self._partial[: end + 1])
            del self._partial[: end + 1]
            self._line(line)
        if len(self._partial) > _REPORT_LIMIT:  # a line that never ends: a bug, not a report
            self._partial.clear()

    def _line(self, line: bytes) -> None:
        if line == _READY:
            self.ready = True
        elif line.startswith(_DISPATCH):
            try:
                self.dispatch(line[len(_DISPATCH) :].decode("ascii", "replace").strip())
            except Exception:  # the runner could not take it now: its housekeeping finds it queued
                log.warning("could not dispatch a job queued by a job's process", exc_info=True)
        elif line.strip():
            self.report = line


def _drain(fd: int) -> bytes:
    """What is left in the pipe once the child has ended (its workers may still hold the write end)."""
    os.set_blocking(fd, False)
    data = bytearray()
    while len(data) < _REPORT_LIMIT:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _kill(pid: int) -> None:
    """SIGKILL the child's process group (its workers too), and reap the child."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):  # already gone
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # reaped already
        os.waitpid(pid, 0)


def _ended(status: int, received: bytes, limits: ProcessLimits) -> ChildEnd:
    report = _report(received)
    told = str(report.get("status", ""))
    if told == "memory" or (os.WIFEXITED(status) and os.WEXITSTATUS(status) == _MEMORY_EXIT):
        return ChildEnd("memory", limits.memory_reason())
    if told == "crashed":
        return ChildEnd("crashed", f"internal error in the job's process: {report.get('reason', '')}")
    if told:
        return ChildEnd(told, report=report)
    if os.WIFSIGNALED(status):
        return ChildEnd("killed", _signal_reason(os.WTERMSIG(status), limits))
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return ChildEnd("crashed", f"the job's process ended with exit code {code} before it reported")


def _report(received: bytes) -> dict[str, Any]:
    try:
        value = json.loads(received.decode("utf-8", "replace").strip() or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _signal_reason(number: int, limits: ProcessLimits) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    reason = f"the job's process was killed by {name}"
    if number == signal.SIGKILL:
        reason += " (by the kernel's out-of-memory killer, or by an operator)"
    elif number == signal.SIGABRT:
        reason += " (a native library gave up, most often for want of memory)"
    if number in (signal.SIGKILL, signal.SIGABRT) and limits.memory_mb > 0:
        reason += f"; its memory limit is {limits.memory_mb} MiB (TIANMU_JOB_MEMORY_MB)"
    return reason
