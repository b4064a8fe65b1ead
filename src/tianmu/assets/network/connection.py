"""What every probe shares: the result (`Identification`), the options, and one TCP/TLS conversation
with read deadlines (`Conn`, `talk`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tianmu.assets.network.tls import insecure_context

__all__ = ["USER_AGENT", "Conn", "Identification", "ProbeOptions", "printable", "run_sync", "talk"]

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


USER_AGENT = "Tianmu-Discovery/0.1 (+asset inventory; GET only)"


@dataclass(slots=True)
class Identification:
    service: str
    product: str | None = None
    version: str | None = None
    banner: str | None = None
    tls: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """Probe-specific facts (auth_required, title, mechanisms...) that findings are drawn from."""
    cpe_product: str | None = None
    """The product to name the CPE after when it is not `product` (Python for http.server)."""
    cpe_version: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    timeout: float = 3.0
    """Seconds for one exchange (connect + answer)."""
    banner_wait: float = 1.5
    """Seconds to wait for a service that speaks first before trying client-first probes."""
    tls_versions: bool = True
    """Survey each TLS protocol version (4 extra handshakes per TLS port)."""


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


def printable(data: bytes, limit: int = 512) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() or ch in "\r\n\t" else "." for ch in text).strip()


async def talk(
    address: str,
    port: int,
    payload: bytes,
    opts: ProbeOptions,
    *,
    tls: bool = False,
    server_name: str | None = None,
    complete: Callable[[bytes], bool] | None = None,
) -> bytes | None:
    conn = await Conn.open(address, port, opts.timeout, tls, server_name)
    if conn is None:
        return None
    try:
        if not await conn.send(payload):
            return b""
        return await conn.recv(opts.timeout, complete)
    finally:
        await conn.close()
