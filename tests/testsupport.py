"""Helpers every test directory may import by this unique name (several `conftest` modules exist, so
`from conftest import ...` would depend on which one Python found first)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["free_port", "serve_app", "services_required", "skip_or_fail"]


def services_required() -> bool:
    return os.environ.get("TIANMU_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Where services are promised (CI), a missing one is a failure, not a skip."""
    if services_required():
        pytest.fail(f"{reason} (TIANMU_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_app(app: Any, port: int, *, lifespan: str = "auto") -> Iterator[None]:
    """Run an ASGI app with uvicorn on 127.0.0.1:`port` in a thread for the duration of the block."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)
