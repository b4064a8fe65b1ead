"""A polite HTTP client for website checks: GET and HEAD only, a clear User-Agent, a rate limit.

Built on httpx; requests go through an `httpx.BaseTransport` when one is given (httpx's own transport
interface: `httpx.MockTransport`, or `tianmu.network.http.SiteTransport`, answers in memory), else over
the network. Certificates are not verified here (the TLS checks judge them separately and report
what is wrong); redirects are not followed automatically, so every request the checks make is one
the rate limit counted. Bodies are read up to `max_body` bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

__all__ = ["USER_AGENT", "PoliteClient", "WebResponse"]

USER_AGENT = "Tianmu-WebCheck/0.1 (website security check; GET/HEAD only; non-destructive)"
_ALLOWED = frozenset({"GET", "HEAD"})


@dataclass(slots=True)
class WebResponse:
    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    elapsed: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return str(value) if value is not None else None

    def raw_head(self) -> str:
        return "\r\n".join(f"{k}: {v}" for k, v in self.headers.multi_items())


class PoliteClient:
    """One site's requests: GET/HEAD only, at most `rate` a second, bodies cut at `max_body` bytes."""

    def __init__(
        self,
        *,
        rate: float = 5.0,
        timeout: float = 10.0,
        max_body: int = 1 << 20,
        user_agent: str = USER_AGENT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.max_body = max_body
        self._last = 0.0
        self.requests = 0
        self._client = httpx.Client(
            verify=False,
            follow_redirects=False,
            timeout=timeout,
            headers={"User-Agent": user_agent},
            transport=transport,
        )

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> WebResponse | None:
        """One request, after waiting for the rate limit; None when the server could not be reached."""
        verb = method.upper()
        if verb not in _ALLOWED:
            raise ValueError(f"website checks never send {verb} (GET and HEAD only)")
        wait = self._last + self.interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last = start = time.monotonic()
        self.requests += 1
        try:
            with self._client.stream(verb, url, headers=headers) as response:
                body = b""
                if verb == "GET":
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) >= self.max_body:
                            break
                return WebResponse(
                    str(response.url),
                    response.status_code,
                    response.headers,
                    body[: self.max_body],
                    time.monotonic() - start,
                )
        except (httpx.HTTPError, OSError):
            return None

    def get(self, url: str, headers: dict[str, str] | None = None) -> WebResponse | None:
        return self.request("GET", url, headers)

    def head(self, url: str, headers: dict[str, str] | None = None) -> WebResponse | None:
        return self.request("HEAD", url, headers)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
