"""TAXII 2.1: pulling collections into the base (taxii2-client), and Tianmu's own read-only endpoint.

Pull: `pull_into(store, collection_url)` reads the collection's objects page by page (`limit`/`next`)
from `added_after` the previous pull of the same collection — the server's `X-TAXII-Date-Added-Last`
header, kept in the source's `kb_sources.details` — and adds them to the source `taxii:<collection
URL>`. Objects go through the STIX reader, so bad ones are reported and the rest kept. taxii2-client
speaks `requests`; given an `httpx.BaseTransport` (`transport=`), its session sends through that
instead of the network (`TransportAdapter`), which is how tests pull from an in-memory collection.

Serve: Tianmu's own read-only endpoint is `tianmu.intel.taxii_server` (FastAPI, loaded only to serve).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from sqlalchemy import select
from taxii2client.common import _HTTPConnection
from taxii2client.v21 import Collection, as_pages

from tianmu.intel.index import INTEL_KIND, load_index
from tianmu.intel.models import FeedResult
from tianmu.intel.stix import entries_from_objects
from tianmu.intel.storage import store_feed
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportReport
from tianmu.store.schema import kb_sources

__all__ = [
    "COLLECTION_ID",
    "MEDIA_TYPE",
    "NAMESPACE",
    "TITLE",
    "TransportAdapter",
    "parse_taxii_time",
    "pull_collection",
    "pull_into",
    "taxii_time",
]

MEDIA_TYPE = "application/taxii+json;version=2.1"
NAMESPACE = uuid.UUID("6f1c8b1e-7d0a-4c3e-9a43-7469616e6d75")
COLLECTION_ID = str(uuid.uuid5(NAMESPACE, "tianmu-indicators"))
_PAGE = 500
TITLE = "Tianmu threat intelligence"


def taxii_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_taxii_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


# --- client -------------------------------------------------------------------------------------------


class TransportAdapter(BaseAdapter):
    """A `requests` adapter that sends through an `httpx.BaseTransport`.

    Tianmu's HTTP seam is httpx's transport (a real pool, or `httpx.MockTransport` in tests);
    taxii2-client only takes a `requests` session, so its session is given this adapter. The transport
    belongs to the caller: closing the session leaves it open.
    """

    def __init__(self, transport: httpx.BaseTransport) -> None:
        super().__init__()
        self._transport = transport

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        body = request.body
        if body is not None and not isinstance(body, str | bytes):
            # A pull only GETs; a streamed upload body would need a streaming request here.
            raise ValueError("TransportAdapter sends in-memory bodies only")
        headers = {k: v if isinstance(v, str) else v.decode("latin-1") for k, v in request.headers.items()}
        outgoing = httpx.Request(
            request.method or "GET",
            request.url or "",
            headers=headers,
            content=body.encode() if isinstance(body, str) else body or b"",
        )
        try:
            reply = self._transport.handle_request(outgoing)
            reply.read()
        except httpx.TransportError as exc:
            # What requests itself raises for a refused or dropped connection, so callers see one error.
            raise requests.ConnectionError(f"{request.url}: {exc}", request=request) from exc
        response = requests.Response()
        response.status_code = reply.status_code
        response.reason = reply.reason_phrase
        response.headers = CaseInsensitiveDict(dict(reply.headers))
        response.url = request.url or ""
        response.request = request
        response.encoding = reply.encoding
        # The body is already read: hand it over the way requests' own adapter leaves a read response.
        response._content = reply.content
        response._content_consumed = True
        return response

    def close(self) -> None:
        pass


def pull_collection(
    url: str,
    *,
    added_after: str | None = None,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    per_request: int = _PAGE,
    transport: httpx.BaseTransport | None = None,
) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    """Pages of (objects, the page's X-TAXII-Date-Added-Last) from a collection URL; `user`/`password`
    for HTTP Basic, `token` for a Bearer token (another Tianmu service's API token); `transport` to
    send through instead of the network."""
    connection = _HTTPConnection(user=user, password=password, version="2.1")
    if transport is not None:
        adapter = TransportAdapter(transport)
        connection.session.mount("http://", adapter)
        connection.session.mount("https://", adapter)
    if token:
        connection.session.headers["Authorization"] = f"Bearer {token}"
    last_seen: list[str] = []

    def remember(response: Any, *_args: Any, **_kwargs: Any) -> None:
        header = response.headers.get("X-TAXII-Date-Added-Last")
        if header:
            last_seen.append(header)

    # taxii2-client returns the parsed envelope only; the paging header comes from the response hook.
    connection.session.hooks["response"].append(remember)
    collection = Collection(url if url.endswith("/") else url + "/", conn=connection)
    filters: dict[str, Any] = {"added_after": added_after} if added_after else {}
    try:
        for envelope in as_pages(collection.get_objects, per_request=per_request, **filters):
            yield list(envelope.get("objects") or []), (last_seen[-1] if last_seen else None)
    finally:
        connection.close()


def pull_into(
    store: Store,
    url: str,
    *,
    home: Path | None = None,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    confidence: int = 50,
    progress: Any = None,
    per_request: int = _PAGE,
    transport: httpx.BaseTransport | None = None,
) -> ImportReport:
    """Pull a collection (from where the last pull stopped) into the source `taxii:<url>`."""
    note = progress or (lambda _message: None)
    source = f"taxii:{url.rstrip('/')}"
    with store.connect() as conn:
        row = conn.execute(select(kb_sources.c.details).where(kb_sources.c.name == source)).first()
    added_after = (row.details or {}).get("added_after") if row else None
    objects: list[dict[str, Any]] = []
    newest = added_after
    try:
        for page, last in pull_collection(
            url,
            added_after=added_after,
            user=user,
            password=password,
            token=token,
            per_request=per_request,
            transport=transport,
        ):
            objects.extend(page)
            newest = last or newest
            note(f"{source}: {len(objects)} objects")
    except Exception as exc:  # requests, TAXII and JSON errors alike: the pull failed, nothing stored
        return ImportReport(
            source, INTEL_KIND, url, "failed", errors=[f"{url}: {exc.__class__.__name__}: {exc}"]
        )
    result: FeedResult = entries_from_objects(objects, source, confidence, url)
    result.kind = "taxii"
    if not objects and row is not None:
        return ImportReport(source, INTEL_KIND, url, "unchanged")
    report = store_feed(store, result, url, f"taxii:{newest or ''}", additive=True)
    with store.begin() as conn:
        details = conn.execute(select(kb_sources.c.details).where(kb_sources.c.name == source)).scalar() or {}
        conn.execute(
            kb_sources.update()
            .where(kb_sources.c.name == source)
            .values(details={**details, "added_after": newest, "objects_pulled": len(objects)})
        )
    load_index(store, home, rebuild=True)
    return report
