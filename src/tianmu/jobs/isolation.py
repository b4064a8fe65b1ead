"""One job's handler in a child process with memory and time limits, watched by the runner's thread.

The service (dashboard, API, every tenant) and `tianmu worker` never parse what a job reads: an
upload's SBOM or log is read in a child process made for that job, whose address space is limited to
`TIANMU_JOB_MEMORY_MB` (RLIMIT_AS) and whose wall-clock time is limited to `TIANMU_JOB_TIMEOUT_SECONDS`.
The runner's thread keeps the job's lease alive, looks at the job's cancel flag about every second,
and kills the child's process group (the child and any workers it forked) when the job is cancelled,
runs out of time, loses its lease, or the runner stops.

The child is not forked from the runner: a process with many threads (uvicorn's, the thread pool's,
the heartbeats), any of which may hold a lock of a C library (SQLite's allocator mutex, OpenSSL's) at
the moment of a fork, leaving it held for ever in the child. It is forked by the runner's fork server
(`tianmu.jobs.zygote`, started once by exec of a fresh interpreter, one thread, handler modules
imported), so it inherits no lock and nothing of the runner's: not its database connections, not its
threads. Its work is sent to it pickled. It ends with the fork server (`die_with_parent`), which ends
with the runner (its socket closes), so a `kill -9` of the service leaves no job running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tianmu.core.config import Settings
from tianmu.jobs.forkserver import ForkServer, ForkServerError
from tianmu.jobs.zygote import MEMORY_EXIT, ChildRequest, request_header
from tianmu.malware.rulecache import RuleCache

__all__ = [
    "CHECK_SECONDS",
    "ChildEnd",
    "ProcessLimits",
    "Watch",
    "Work",
    "can_isolate",
    "run_in_child",
]

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
"""How often the parent asks whether the job was cancelled (one small SELECT)."""
_POLL_SECONDS = 0.1
_REAP_SECONDS = 30.0
"""How long a kill waits for the fork server to say the child was reaped."""
_DISPATCH = b"D "
_REPORT_LIMIT = 1 << 20
"""Bytes of report the parent reads from a child (a list of rule files, a status): more is a bug."""
_HEADER = request_header()


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
    `stopped` (the runner stopped), `killed` (by a signal), `crashed`.
    """

    status: str
    reason: str = ""
    """For the ends the parent records: why, in words for the job's error."""
    report: dict[str, Any] = field(default_factory=dict)
    """What the child reported besides its status (the rule files it loaded)."""


Work = Callable[[Callable[[str], None], RuleCache], dict[str, Any]]
"""The child's work: given a `dispatch` that hands job ids to the runner, and the fork server's loaded
rule sets, it returns its report. It must pickle."""


def run_in_child(work: Work, limits: ProcessLimits, watch: Watch, forks: ForkServer) -> ChildEnd:
    """Have the fork server fork a child that runs `work(dispatch, rules)` under `limits`; watch it to
    its end.

    `work` must pickle (a module-level function, or an object of a module-level class): it is sent to
    the child, which was not forked from this process. It returns the child's report (JSON-ready, with
    a `status`) and does its own writes to the database. The child talks to this process through its
    socket, a line at a time: each job it dispatches, then its report; the server says on another
    socket which pid the child has and how it ended. Never raises for what happens in the child.
    """
    request = ChildRequest(work, limits.memory_mb, dict(os.environ), os.getcwd(), list(sys.path))
    try:
        payload = pickle.dumps(request)
    except Exception as exc:  # a closure or a lambda: it cannot reach a process that was not forked
        return ChildEnd("crashed", f"the job's work cannot be sent to its process: {exc}")
    try:
        control, child = forks.fork()
    except (OSError, ForkServerError) as exc:
        return ChildEnd("crashed", f"the job's process could not be started: {exc}")
    with control, child:
        # An error: the child is already gone, and the server says how it ended.
        with contextlib.suppress(OSError):
            child.sendall(_HEADER.pack(len(payload)) + payload)
        return _watch(control, child, limits, watch)


class _Server:
    """What the fork server says of one child: its pid, then how it ended."""

    def __init__(self, control: socket.socket, limits: ProcessLimits) -> None:
        self.control = control
        self.limits = limits
        self.pid: int | None = None
        self.status: int | None = None
        self.gone = False
        """The server's socket closed: it ended (and the child with it), or it ended the child."""
        self._partial = b""

    def read(self) -> None:
        try:
            data = self.control.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.gone = True
            return
        self._partial += data
        while b"\n" in self._partial:
            line, self._partial = self._partial.split(b"\n", 1)
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"P":
                self.pid = int(parts[1])
                _warn_when_inheriting_most_of(int(parts[2]), self.limits)
            elif len(parts) == 2 and parts[0] == b"E":
                self.status = int(parts[1])

    def kill_group(self) -> None:
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                with contextlib.suppress(OSError):  # already gone
                    os.kill(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the child's process group (its workers too), and wait until the server reaped it."""
        # At once from here too: the server may be loading a rule set for a moment.
        self.kill_group()
        with contextlib.suppress(OSError):
            self.control.sendall(b"K")
        deadline = time.monotonic() + _REAP_SECONDS
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        while self.status is None and not self.gone and time.monotonic() < deadline:
            if poller.poll(_POLL_SECONDS * 1000):
                self.read()


def _warn_when_inheriting_most_of(inherited: int, limits: ProcessLimits) -> None:
    # RLIMIT_AS counts what the child inherits (the fork server's modules and loaded rule sets): a
    # server grown close to the limit leaves its jobs little, and that must be visible.
    if limits.memory_mb > 0 and inherited > limits.memory_mb * 3 // 4:
        log.warning(
            "the job fork server's address space (%s MiB) is most of the job memory limit (%s MiB, "
            "TIANMU_JOB_MEMORY_MB): its jobs inherit it and may fail early; raise the limit",
            inherited,
            limits.memory_mb,
        )


def _watch(control: socket.socket, child: socket.socket, limits: ProcessLimits, watch: Watch) -> ChildEnd:
    started = time.monotonic()
    deadline = started + limits.timeout_seconds if limits.timeout_seconds > 0 else None
    next_check = started + CHECK_SECONDS
    lines = _Lines(watch.dispatch)
    server = _Server(control, limits)
    # poll, not select: a busy service's descriptors pass select's limit of 1024.
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(child, select.POLLIN)
    while True:
        for fd, _events in poller.poll(_POLL_SECONDS * 1000):
            if fd == control.fileno():
                server.read()
                if server.gone or server.status is not None:
                    poller.unregister(control)
            else:
                chunk = _recv(child)
                if not chunk:  # every writer closed: the child is ending
                    poller.unregister(child)
                lines.feed(chunk)
        if server.status is not None or server.gone:
            lines.feed(_drain(child))
            lines.feed(b"\n")
            if server.status is None:
                # The server died (its child with it, by die_with_parent): the workers the child
                # started are still in its group, and nobody else would end them.
                server.kill_group()
                if watch.stopping.is_set():
                    return ChildEnd("stopped", "the runner stopped")
                return ChildEnd("crashed", "the job fork server ended before the job's process reported")
            return _ended(server.status, lines.report, limits)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            server.kill()
            return ChildEnd("timeout", limits.time_reason())
        if watch.stopping.is_set():
            server.kill()
            return ChildEnd("stopped", "the runner stopped")
        if watch.lost():
            server.kill()
            return ChildEnd("lost", "another worker holds the job")
        if now >= next_check:
            next_check = now + CHECK_SECONDS
            try:
                cancelled = watch.cancelled()
            except Exception:  # a database hiccup: ask again at the next check
                cancelled = False
            if cancelled:
                server.kill()
                return ChildEnd("cancel", "cancelled")


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:  # reset: as closed
        return b""


class _Lines:
    """The child's messages, a line each: `D <job id>` (dispatched at once), then the report."""

    def __init__(self, dispatch: Callable[[str], None]) -> None:
        self.dispatch = dispatch
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
        if line.startswith(_DISPATCH):
            try:
                self.dispatch(line[len(_DISPATCH) :].decode("ascii", "replace").strip())
            except Exception:  # the runner could not take it now: its housekeeping finds it queued
                log.warning("could not dispatch a job queued by a job's process", exc_info=True)
        elif line.strip():
            self.report = line


def _drain(sock: socket.socket) -> bytes:
    """What is left on the socket once the child has ended (its workers may still hold it open)."""
    sock.setblocking(False)
    data = bytearray()
    while len(data) < _REPORT_LIMIT:
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _ended(status: int, received: bytes, limits: ProcessLimits) -> ChildEnd:
    report = _report(received)
    told = str(report.get("status", ""))
    if told == "memory" or (os.WIFEXITED(status) and os.WEXITSTATUS(status) == MEMORY_EXIT):
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
