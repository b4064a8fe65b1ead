"""One TCP (optionally TLS) conversation with read deadlines, and running such work from sync code.

Service probes (`tianmu discover`) and website TLS checks (`tianmu web`) both talk to endpoints this
way; what each says on the wire is theirs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tianmu.network.tls import insecure_context

__all__ = ["Conn", "run_sync"]

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run probes to completion from synchronous code, also when the caller is itself inside an event
    loop (an async web handler): then on a loop of its own in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Conn:
    """One TCP (optionally TLS) conversation with read deadlines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, address: str, port: int, timeout: float, tls: bool = False, server_name: str | None = None
    ) -> Conn | None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    address,
                    port,
                    ssl=insecure_context() if tls else None,
                    server_hostname=(server_name or address) if tls else None,
                    limit=1 << 20,
                ),
                timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError, EOFError):
            return None
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, ssl.SSLError):
            return False
        return True

    async def recv(
        self, timeout: float, complete: Callable[[bytes], bool] | None = None, limit: int = 262144
    ) -> bytes:
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(data) < limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except (OSError, TimeoutError, ssl.SSLError, EOFError):
                break
            if not chunk:
                break
            data += chunk
            if complete is not None and complete(data):
                break
        return data

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
