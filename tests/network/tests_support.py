"""Helpers for tests over this machine's own services."""

from __future__ import annotations

import socket

import pytest

from testsupport import skip_or_fail


def machine_port(port: int, what: str, *, required: bool = True) -> int:
    """The port of a service this machine runs on 127.0.0.1, or a skip (a failure where services are
    promised, for the ones the test environment guarantees: Redis, PostgreSQL, RabbitMQ)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return port
    except OSError:
        if required:
            skip_or_fail(f"{what} not listening on 127.0.0.1:{port}")
        pytest.skip(f"{what} not listening on 127.0.0.1:{port}")
    raise AssertionError("unreachable")
