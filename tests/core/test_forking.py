"""`fork_map`: results in order from forked workers that inherit the function; failures surface."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tianmu.core.forking import can_fork, fork_map

pytestmark = pytest.mark.skipif(not can_fork(), reason="needs fork and a single-threaded test process")


def test_results_come_back_in_order_from_other_processes() -> None:
    parent = os.getpid()
    unpicklable = {"table": lambda x: x * 3}  # inherited at fork: never pickled

    def work(item: int) -> tuple[int, int]:
        return unpicklable["table"](item), os.getpid()

    results = list(fork_map(work, list(range(40)), 2))
    assert [value for value, _pid in results] == [item * 3 for item in range(40)]
    assert parent not in {pid for _value, pid in results}


def test_an_exception_in_a_worker_is_raised_with_its_traceback() -> None:
    def work(item: int) -> int:
        if item == 5:
            raise ValueError("record 5 is bad")
        return item

    with pytest.raises(RuntimeError, match="record 5 is bad"):
        list(fork_map(work, list(range(10)), 2))
    assert threading.active_count() == 1  # nothing of the failed call is left running


def test_a_worker_that_dies_does_not_hang_the_caller() -> None:
    assert can_fork()  # in-process, the kill below would end the test run itself

    def work(item: int) -> int:
        if item == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return item

    with pytest.raises(RuntimeError, match="died"):
        list(fork_map(work, list(range(5000)), 2))  # more tasks than the pipe holds: still no hang
    assert threading.active_count() == 1


def test_with_other_threads_running_the_work_stays_in_process() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not can_fork()
        assert {pid for pid in fork_map(lambda _item: os.getpid(), [1, 2, 3], 2)} == {os.getpid()}
    finally:
        stop.set()
        thread.join()


_PARENT = """
import os, sys, time
from tianmu.core.forking import fork_map

def work(item):
    # One write(2) per line: two workers printing at once never interleave their digits and newlines.
    os.write(1, f"{os.getpid()}\\n".encode())
    time.sleep(60)
    return item

list(fork_map(work, [1, 2], 2))
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().split()[2] == "Z"  # a zombie waiting for init is gone too


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to see the workers")
def test_workers_end_when_their_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        workers = [int(parent.stdout.readline()), int(parent.stdout.readline())]
        assert not any(_gone(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)  # as `kill -9` of `tianmu assess`: no clean-up runs
        parent.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in workers)
