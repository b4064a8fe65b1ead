"""The runner's handle on its fork server (`tianmu.jobs.zygote`): started once, asked for one child per job.

Whoever runs jobs (the in-process runner of `tianmu serve`, each `tianmu worker` pool process) owns one
`ForkServer` for as long as it lives, as it owns its `RuleCache`: the server is started on first use by
exec of a fresh interpreter — never by a fork of the runner, whose other threads may hold locks — and
started again if it has died. Closing the handle (or the runner dying) closes the server's socket; the
server then kills its children's process groups and ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

from tianmu.core.errors import TianmuError

__all__ = ["PRELOAD", "READY_SECONDS", "ForkServer", "ForkServerError"]

log = logging.getLogger(__name__)

PRELOAD = ("tianmu.jobs.handlers",)
"""Imported by the server before its first fork: every job kind's handler and the road beneath it."""
READY_SECONDS = 120.0
"""How long a new server may take to import its modules (about 2 s; far more on a loaded machine)."""


_MAIN = "import sys; from tianmu.jobs.zygote import main; main(sys.argv)"
"""Not `-m tianmu.jobs.zygote`: the package imports that module first, which runpy warns about."""


class ForkServerError(TianmuError):
    """The fork server could not be started or reached."""


class ForkServer:
    """One fork server process and the socket to it; safe to share between the runner's threads."""

    def __init__(self, preload: Iterable[str] = PRELOAD) -> None:
        self.preload = tuple(dict.fromkeys(preload))
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._closed = False
        """Closed by its owner: a late `start()` (a warm-up thread) starts nothing; a `fork()` does."""
        self.threads = 0
        """The server's threads when it said it was ready (1: nothing can be held when it forks)."""
        # A process forked from the owner (a Celery pool child) must start a server of its own: the
        # socket it inherited is its parent's.
        # Weakly: the process-wide hook must not keep every handle ever made alive.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget(ref()))

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    def fork(self) -> tuple[socket.socket, socket.socket]:
        """A new child: returns (its control socket to the server, the child's own socket)."""
        ours, theirs = socket.socketpair()
        child_ours, child_theirs = socket.socketpair()
        try:
            with self._lock:
                self._closed = False
                for attempt in range(2):
                    control = self._running()
                    try:
                        socket.send_fds(control, [b"F"], [theirs.fileno(), child_theirs.fileno()])
                        break
                    except OSError:
                        # The server died since its last request: start another, once.
                        self._close_locked()
                        if attempt:
                            raise
        except BaseException:
            ours.close()
            child_ours.close()
            raise
        finally:
            theirs.close()
            child_theirs.close()
        return ours, child_ours

    def load_rules(self, paths: Sequence[Path]) -> None:
        """Have the server load these rule sets, for the next jobs' children to inherit."""
        if not paths:
            return
        message = b"L\n" + "\n".join(str(p) for p in paths).encode("utf-8")
        with self._lock:
            if self._control is None:
                return  # a new server has none loaded: the next job loads what it needs
            try:
                self._control.send(message)
            except OSError:
                self._close_locked()

    def start(self) -> None:
        """Start the server now, if it is not running (so the first job does not wait for it)."""
        with self._lock:
            if not self._closed:
                self._running()

    def close(self) -> None:
        """Stop the server: its children are killed, the server ends."""
        with self._lock:
            self._closed = True
            self._close_locked()

    def _running(self) -> socket.socket:
        if self._control is not None and self._process is not None and self._process.poll() is None:
            return self._control
        self._close_locked()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {"fd": theirs.fileno(), "path": sys.path, "preload": list(self.preload)}
        try:
            # A new session: a Ctrl-C in the terminal reaches the runner, which stops its jobs itself.
            process = subprocess.Popen(
                [sys.executable, "-c", _MAIN, json.dumps(config)],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise ForkServerError(f"cannot start the job fork server: {exc}") from exc
        finally:
            theirs.close()
        self._process, self._control = process, ours
        self._await_ready(ours, process)
        return ours

    def _await_ready(self, control: socket.socket, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            control.settimeout(max(0.1, min(1.0, deadline - time.monotonic())))
            try:
                hello = control.recv(256)
                break
            except TimeoutError:
                if process.poll() is not None or time.monotonic() >= deadline:
                    hello = b""
                    break
            finally:
                control.settimeout(None)
        parts = hello.split()
        if len(parts) != 3 or parts[0] != b"ready":
            code = process.poll()
            self._close_locked()
            raise ForkServerError(
                "the job fork server did not start"
                + (f" (exit code {code})" if code is not None else f" within {READY_SECONDS:g} s")
            )
        self.threads = int(parts[2])
        if self.threads != 1:
            log.warning(
                "the job fork server runs %s threads: a job's process may inherit a held lock", self.threads
            )

    def _close_locked(self) -> None:
        control, process = self._control, self._process
        self._control, self._process = None, None
        if control is not None:
            control.close()
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
                process.wait()


def _forget(server: ForkServer | None) -> None:
    if server is not None:
        server._lock = threading.Lock()
        server._process, server._control, server._closed = None, None, False
