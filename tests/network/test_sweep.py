"""The connect sweep against ports we open and close ourselves on loopback."""

from __future__ import annotations

import _socket
import socket
from collections.abc import Iterator

import pytest

import tianmu.assets.network.sweep as module
from network.servers import free_port
from tianmu.assets.network.sweep import SweepOptions, sweep
from tianmu.network.targets import Target, expand_targets

# An address of the loopback network no other test binds: sweeps over ranges of ports then see only the
# listeners these tests open (servers bound to 0.0.0.0 aside), even beside parallel test workers.
HOST = "127.0.0.77"


def _closed_ports(count: int) -> list[int]:
    ports = []
    for _ in range(count):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
    return ports


@pytest.fixture
def listeners() -> Iterator[list[int]]:
    socks = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind((HOST, 0))
        sock.listen(64)
        socks.append(sock)
    yield [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()


def test_open_and_closed_ports(listeners: list[int]) -> None:
    closed = _closed_ports(5)
    result = sweep([Target(HOST)], sorted(listeners + closed))
    assert result.open[HOST] == sorted(listeners)
    assert result.closed[HOST] == len(set(closed) - set(listeners))
    assert result.filtered[HOST] == []


def test_ipv6_loopback() -> None:
    try:
        sock = socket.socket(socket.AF_INET6)
        sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    sock.listen(8)
    port = sock.getsockname()[1]
    try:
        result = sweep([Target("::1")], [port, free_port()])
    finally:
        sock.close()
    assert result.open["::1"] == [port]


def test_window_per_host_cap_and_rate_limit(listeners: list[int]) -> None:
    ports = list(range(40000, 40200)) + listeners
    result = sweep([Target(HOST)], ports, SweepOptions(max_inflight=16, per_host=4, rate=2000))
    assert result.open[HOST] == sorted(listeners)
    assert result.attempts >= len(set(ports))
    # 2000 attempts/s over ~203 attempts cannot finish in much less than 0.1 s.
    assert result.elapsed >= 0.09


def test_unanswered_connects_are_filtered_after_retries() -> None:
    # A listener whose backlog is full and never accepts: further SYNs are dropped, so connects time out.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        result = sweep([Target("127.0.0.1")], [port], SweepOptions(timeout=0.3, retries=1))
    finally:
        for filler in fillers:
            filler.close()
        sock.close()
    assert result.filtered["127.0.0.1"] == [port]
    assert result.attempts == 2  # the first try and one retry


def test_self_connect_is_not_an_open_port(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the trap: a socket whose local address is its peer address, as TCP simultaneous open makes it.
    class SelfConnected(_socket.socket):
        def getsockname(self) -> object:
            return self.getpeername()

    monkeypatch.setattr(module, "_RawSocket", SelfConnected)
    real_socket = socket.socket
    listener = real_socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        result = sweep([Target("127.0.0.1")], [listener.getsockname()[1]])
    finally:
        listener.close()
    assert result.open["127.0.0.1"] == []
    assert result.self_connects == 1


def test_several_hosts_of_a_range() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.3", 0))
    sock.listen(8)
    port = sock.getsockname()[1]
    try:
        targets = expand_targets(["127.0.0.1-4"])
        result = sweep(targets, [port], SweepOptions(per_host=1))
    finally:
        sock.close()
    assert [t.address for t in targets] == ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert {a: p for a, p in result.open.items() if p} == {"127.0.0.3": [port]}
    assert sum(result.closed.values()) == 3
