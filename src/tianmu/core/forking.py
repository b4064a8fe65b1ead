"""`fork_map`: run a function over items in forked worker processes that inherit it.

Compiled rule sets (Sigma matchers, yara-x scanners, intel indexes) are expensive to build and cannot be
pickled. A process pool would pickle the function for every task; forked processes inherit it, with
everything it closes over, at the cost of nothing. So the function and the items stay in the parent's
memory and only item numbers go to the workers, only results come back (results must pickle).

This replaces the module-global "worker state" a `ProcessPoolExecutor` initializer needs: the state
lives in the closure the caller owns, for exactly the length of the call.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.queues import Queue
from queue import Empty
from typing import Any, TypeVar

__all__ = ["can_fork", "die_with_parent", "fork_map"]

T = TypeVar("T")
R = TypeVar("R")

_POLL_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1
"""`<linux/prctl.h>`: the signal the kernel sends a process when its parent dies."""


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this worker when `parent` dies (Linux), and end now if it already has.

    A worker left behind by a `kill -9` of its parent would hold the database files and the data
    directory for ever. Where prctl is missing, callers that wait for work also check `os.getppid()`.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the caller's re-parenting check still ends the worker
    if os.getppid() != parent:
        os._exit(0)  # the parent died before the request took effect


def can_fork() -> bool:
    """Fork only where it is safe: POSIX, and no other thread running (a thread holding a lock at fork
    time — a logging handler, a connection pool — would leave that lock held forever in the child; in
    the service or a worker with threads the work runs in-process instead)."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def fork_map(work: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """`work(item)` for every item, yielded in the items' order; in-process when one worker will do.

    An exception in a worker is raised again here (as RuntimeError with the worker's traceback); a
    worker that dies (killed, out of memory) raises RuntimeError too, instead of hanging the caller.
    """
    if workers <= 1 or len(items) <= 1 or not can_fork():
        for item in items:
            yield work(item)
        return
    context = multiprocessing.get_context("fork")
    tasks: Queue[int | None] = context.Queue()
    results: Queue[tuple[int, bool, Any]] = context.Queue()
    count = min(workers, len(items))
    parent = os.getpid()
    processes = [
        context.Process(target=_serve, args=(work, items, tasks, results, parent), daemon=True)
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    # Queued after the forks: the queue's feeder thread starts with the first put, and no child
    # should be forked while it runs.
    for index in range(len(items)):
        tasks.put(index)
    for _ in range(count):
        tasks.put(None)
    pending: dict[int, Any] = {}
    following = 0
    try:
        while following < len(items):
            try:
                index, ok, value = results.get(timeout=_POLL_SECONDS)
            except Empty:
                # A worker killed mid-write can leave the results queue's lock held, so the others
                # may never finish: one death ends the call (the rest are terminated below).
                dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                if dead or not any(p.is_alive() for p in processes):
                    codes = ", ".join(str(code) for code in dead) or "0"
                    raise RuntimeError(f"a worker process died (exit code {codes})") from None
                continue
            if not ok:
                raise RuntimeError(f"worker failed:\n{value}")
            pending[index] = value
            while following in pending:
                yield pending.pop(following)
                following += 1
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        # The queue's feeder thread must end with the call: a thread left running would make the
        # next call (or the caller's own fork) unsafe. After a failure, tasks nobody will take may
        # fill the pipe: the parent takes them itself, so the thread can write the rest and stop.
        if following < len(items):
            _drain(tasks)
        tasks.close()
        tasks.join_thread()
        results.close()


def _next_task(tasks: Queue[int | None], parent: int) -> int | None:
    """The next item number, or None (stop) when the parent is gone: a worker is no orphan."""
    while True:
        try:
            return tasks.get(timeout=_POLL_SECONDS)
        except Empty:
            if os.getppid() != parent:
                return None


def _drain(tasks: Queue[int | None]) -> None:
    try:
        while True:
            tasks.get(timeout=0.05)
    except (Empty, OSError, EOFError):
        return


def _serve(
    work: Callable[[Any], Any],
    items: Sequence[Any],
    tasks: Queue[int | None],
    results: Queue[tuple[int, bool, Any]],
    parent: int,
) -> None:
    die_with_parent(parent)
    while (index := _next_task(tasks, parent)) is not None:
        try:
            results.put((index, True, work(items[index])))
        except BaseException:  # reported to the parent, which raises it: the worker must not die silently
            results.put((index, False, traceback.format_exc()))
    results.close()
    results.join_thread()
    os._exit(0)  # skip the parent's atexit handlers and finalisers inherited at fork
