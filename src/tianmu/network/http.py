"""HTTP through httpx's own transport interface, and an in-memory website to test checks against.

Website checks send their requests through an `httpx.BaseTransport` handed down from the job's options
(`WebOptions.transport`); `None` means the network. `SiteTransport` is the in-memory twin: fixed pages
by path, 404 for every other path, and a record of every request it was asked, so tests can judge the
checks (and their politeness) without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

__all__ = ["Page", "SiteTransport", "Transport"]

Transport = httpx.BaseTransport
"""Where HTTP requests go: `httpx.HTTPTransport` (the network), `httpx.MockTransport`, `SiteTransport`."""


@dataclass(frozen=True, slots=True)
class Page:
    """One fixed answer of an in-memory site."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""


class SiteTransport(httpx.MockTransport):
    """An in-memory website: `pages` by path (query ignored), `missing` for every other path."""

    def __init__(self, pages: Mapping[str, Page], *, missing: Page | None = None) -> None:
        self.pages = dict(pages)
        self.missing = missing or Page(404, [("Content-Type", "text/plain")], b"not found")
        self.requests: list[httpx.Request] = []
        super().__init__(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        page = self.pages.get(request.url.path, self.missing)
        # A HEAD answer has the page's headers and no body, as a server's would.
        body = b"" if request.method == "HEAD" else page.body
        return httpx.Response(page.status, headers=list(page.headers), content=body)
