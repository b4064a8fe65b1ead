"""What every probe shares: the result (`Identification`), the options, and one request/answer exchange
(`talk`) over the shared room's `Conn`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tianmu.network.connection import Conn

__all__ = ["USER_AGENT", "Identification", "ProbeOptions", "printable", "talk"]

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
