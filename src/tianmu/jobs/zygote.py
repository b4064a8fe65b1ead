"""The fork server: a process with one thread that forks one child per job (`zygote.main`).

A job's process used to be forked from the runner's thread inside `tianmu serve`, a process with many
threads (uvicorn's, the thread pool's, the heartbeats): a lock of a C library (SQLite's allocator
mutex, OpenSSL's) held by another thread at the fork stayed held for ever in the child, which hung.
The runner now starts this server once, by exec of a fresh interpreter (so it inherits no thread and
no lock of the runner, whenever the runner starts it); the server imports the handler modules once
and forks a child for each job on request. It never starts a thread, so nothing is ever held when it
forks, and its children start in milliseconds with the handlers already imported.

It keeps the malware rule sets the runner asks it to load (`RuleCache`), so every later job's child
inherits them loaded (copy-on-write) instead of paying yara-x's load (0.3-0.7 s per rule set) again.

The protocol, over a SEQPACKET socket pair made by the runner (`tianmu.jobs.forkserver`):
- the server says `ready <address space MiB> <threads>` once its modules are imported;
- `F` with two descriptors (the job's control socket, the child's socket): fork a child. On the control
  socket the server writes `P <pid> <address space MiB>` and, once it has reaped the child,
  `E <wait status>`; a `K` (or the runner closing it) kills the child's process group;
- `L` and a path per line: load these rule sets;
- the runner closing the socket (it stopped, or was killed): every child's group is killed, and the
  server ends.
The child reads its work from its own socket (a pickle of the runner's, which the server never
unpickles) and writes its messages there; it never holds the server's sockets.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import resource
import select
import signal
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tianmu.core.forking import die_with_parent
from tianmu.malware.rulecache import RuleCache

__all__ = ["MEMORY_EXIT", "ChildRequest", "address_space_mib", "main", "request_header", "thread_count"]

_HEADER = struct.Struct("!I")
MEMORY_EXIT = 3
"""A child's exit code after a MemoryError (its report may not have got out)."""
_MEMORY_REPORT = b'{"status": "memory"}\n'
"""Encoded beforehand: after a MemoryError the child may not be able to build a string."""
_POLL_MS = 1000


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """What the runner sends a child: its work and the process state it would have inherited at a fork."""

    work: Any
    """Called with (dispatch, rules); returns the JSON-ready report (with a `status`)."""
    memory_mb: int
    environ: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    path: list[str] = field(default_factory=list)


def request_header() -> struct.Struct:
    """How a child's work is framed on its socket: its length, then its pickle."""
    return _HEADER


def address_space_mib() -> int | None:
    """This process's address space (VmSize) in MiB, where /proc says it."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") >> 20


def thread_count() -> int:
    """The threads of this process as the kernel counts them (native ones included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


@dataclass(slots=True)
class _Child:
    control: socket.socket
    pid: int


class _Server:
    def __init__(self, control: socket.socket, rules: RuleCache) -> None:
        self.control = control
        self.rules = rules
        self.pid = os.getpid()
        self.parent = os.getppid()
        self.children: dict[int, _Child] = {}
        """By the descriptor of their control socket."""
        self.poller = select.poll()
        self.wake_r, self.wake_w = os.pipe()

    def serve(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        # SIGCHLD wakes the poll: a child's end is reported at once, not at the next timeout.
        signal.signal(signal.SIGCHLD, lambda _n, _f: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.poller.register(self.control, select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)
        while True:
            for fd, _events in self.poller.poll(_POLL_MS):
                if fd == self.control.fileno():
                    if not self._request():
                        return self._stop()
                elif fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                elif fd in self.children:
                    self._from_runner(self.children[fd])
            self._reap()
            if os.getppid() != self.parent:  # the runner died and its socket was inherited somewhere
                return self._stop()

    def _request(self) -> bool:
        try:
            message, fds, _flags, _addr = socket.recv_fds(self.control, 1 << 20, 4)
        except OSError:
            return False
        if not message:
            return False
        if message == b"F" and len(fds) == 2:
            self._fork(socket.socket(fileno=fds[0]), fds[1])
        elif message.startswith(b"L\n"):
            for fd in fds:
                os.close(fd)
            for name in message[2:].decode("utf-8", "replace").splitlines():
                try:
                    self.rules.load(Path(name))
                except Exception as exc:  # the next job loads it itself; the server must not end for it
                    print(f"tianmu fork server: could not load {name}: {exc}", file=sys.stderr)
        else:
            for fd in fds:
                os.close(fd)
        return True

    def _fork(self, control: socket.socket, child_fd: int) -> None:
        pid = os.fork()
        if pid == 0:
            control.close()
            self._child(child_fd)  # never returns
        os.close(child_fd)
        # Also here: the runner may kill the group before the child has run its own setpgid.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        child = _Child(control, pid)
        self.children[control.fileno()] = child
        self.poller.register(control, select.POLLIN)
        with contextlib.suppress(OSError):
            control.sendall(f"P {pid} {address_space_mib() or 0}\n".encode())

    def _from_runner(self, child: _Child) -> None:
        try:
            data = child.control.recv(64)
        except OSError:
            data = b""
        # `K`, or the runner no longer watches the child (its thread gave up): nobody would record it.
        if not data or b"K" in data:
            _kill_group(child.pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for fd, child in list(self.children.items()):
                if child.pid == pid:
                    del self.children[fd]
                    self.poller.unregister(fd)
                    with contextlib.suppress(OSError):
                        child.control.sendall(f"E {status}\n".encode())
                    child.control.close()

    def _stop(self) -> None:
        for child in self.children.values():
            _kill_group(child.pid)
        for child in self.children.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)

    def _child(self, child_fd: int) -> None:
        # Nothing of the server's may stay open in a job's process: it reads hostile input.
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        self.control.close()
        for child in self.children.values():
            child.control.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        _run_child(child_fd, self.pid, self.rules)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):  # already gone
            os.kill(pid, signal.SIGKILL)


def _read_exactly(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the runner closed the job's socket before sending its work")
        data += chunk
    return bytes(data)


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _run_child(fd: int, server: int, rules: RuleCache) -> None:
    code = 1
    try:
        os.setpgid(0, 0)
        die_with_parent(server)
        (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
        request: ChildRequest = pickle.loads(_read_exactly(fd, size))
        # The process state a fork of the runner would have given the job: its environment (the
        # settings read at the edge are in the work), its folder and its import path.
        os.environ.clear()
        os.environ.update(request.environ)
        if request.cwd:
            with contextlib.suppress(OSError):
                os.chdir(request.cwd)
        if request.path:
            sys.path[:] = request.path
        if request.memory_mb > 0:
            limit = request.memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        def dispatch(job_id: str) -> None:
            _send(fd, b"D " + job_id.encode("ascii", "replace") + b"\n")

        report = request.work(dispatch, rules)
        _send(fd, json.dumps(report).encode("utf-8") + b"\n")
        code = 0
    except MemoryError:
        with contextlib.suppress(BaseException):
            _send(fd, _MEMORY_REPORT)
        code = MEMORY_EXIT
    except BaseException as exc:  # reported to the runner, which records it on the job
        try:
            message = f"{exc.__class__.__name__}: {exc}"
            _send(fd, json.dumps({"status": "crashed", "reason": message}).encode("utf-8") + b"\n")
        except BaseException:
            pass  # nothing more can be said: the runner records the exit code
    finally:
        for stream in (sys.stdout, sys.stderr):
            # A closed or broken stream must not change how the child ends.
            with contextlib.suppress(BaseException):
                stream.flush()
        # Skip the server's atexit handlers and finalisers.
        os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """`python -c '...main(sys.argv)' CONFIG`: CONFIG is JSON with the socket's descriptor (`fd`), the
    runner's import path (`path`) and the modules to import before the first fork (`preload`)."""
    config = json.loads((argv if argv is not None else sys.argv)[1])
    # Not the terminal's: a Ctrl-C reaches the runner, which stops its jobs and then this server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=int(config["fd"]))
    sys.path[:] = [str(entry) for entry in config.get("path", sys.path)]
    for name in config.get("preload", []):
        try:
            importlib.import_module(str(name))
        except Exception as exc:  # its jobs fail with the reason; the others run
            print(f"tianmu fork server: could not import {name}: {exc}", file=sys.stderr)
    server = _Server(control, RuleCache())
    control.send(f"ready {address_space_mib() or 0} {thread_count()}".encode())
    server.serve()


if __name__ == "__main__":
    main()
