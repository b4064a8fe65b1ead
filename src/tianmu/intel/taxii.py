"""TAXII 2.1: pulling collections into the base (taxii2-client), and Tianmu's own read-only endpoint.

Pull: `pull_into(store, collection_url)` reads the collection's objects page by page (`limit`/`next`)
from `added_after` the previous pull of the same collection — the server's `X-TAXII-Date-Added-Last`
header, kept in the source's `kb_sources.details` — and adds them to the source `taxii:<collection
URL>`. Objects go through the STIX reader, so bad ones are reported and the rest kept. taxii2-client
speaks `requests`; given an `httpx.BaseTransport` (`transport=`), its session sends through that
instead of the network (`TransportAdapter`), which is how tests pull from an in-memory collection.

Serve: `taxii_router()` has the TAXII 2.1 discovery, API root, collections and get-objects endpoints
(read-only), publishing every stored indicator as a STIX 2.1 indicator in one collection, with
`added_after`, `limit` and `next` paging. It lets other tools (and another Tianmu) subscribe to what
this one knows: `tianmu serve` mounts it at /taxii2/ behind sign-in (an API token as Bearer
credential), `create_taxii_app(store)` serves it alone for `tianmu intel serve`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import requests
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from sqlalchemy import func, select
from taxii2client.common import _HTTPConnection
from taxii2client.v21 import Collection, as_pages

from tianmu.core.knowledge import ImportReport
from tianmu.intel.index import INTEL_KIND, load_index
from tianmu.intel.models import FeedResult
from tianmu.intel.stix import entries_from_objects
from tianmu.intel.storage import store_feed
from tianmu.store.database import Store
from tianmu.store.schema import intel_indicators, kb_sources

__all__ = [
    "COLLECTION_ID",
    "MEDIA_TYPE",
    "TransportAdapter",
    "create_taxii_app",
    "indicator_object",
    "pull_collection",
    "pull_into",
    "taxii_router",
]

MEDIA_TYPE = "application/taxii+json;version=2.1"
_NAMESPACE = uuid.UUID("6f1c8b1e-7d0a-4c3e-9a43-7469616e6d75")
COLLECTION_ID = str(uuid.uuid5(_NAMESPACE, "tianmu-indicators"))
_PAGE = 500
TITLE = "Tianmu threat intelligence"


def _taxii_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
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


# --- server -------------------------------------------------------------------------------------------

_HASH_NAMES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}


def _pattern(kind: str, value: str) -> str:
    quoted = value.replace("\\", "\\\\").replace("'", "\\'")
    if kind in ("ip", "cidr"):
        family = "ipv6-addr" if ":" in value else "ipv4-addr"
        operator = "ISSUBSET" if kind == "cidr" else "="
        return f"[{family}:value {operator} '{quoted}']"
    if kind in _HASH_NAMES:
        return f"[file:hashes.'{_HASH_NAMES[kind]}' = '{quoted}']"
    if kind == "user-agent":
        return f"[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = '{quoted}']"
    family = {"domain": "domain-name", "url": "url", "email": "email-addr"}[kind]
    return f"[{family}:value = '{quoted}']"


def indicator_object(row: Any, created: datetime) -> dict[str, Any]:
    """A stored indicator row as a STIX 2.1 indicator (deterministic id per source, type and value)."""
    ident = uuid.uuid5(_NAMESPACE, f"{row.source}\t{row.type}\t{row.value}")
    stamp = _taxii_time(created)
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{ident}",
        "created": stamp,
        "modified": stamp,
        "name": row.value,
        "pattern": _pattern(row.type, row.value),
        "pattern_type": "stix",
        "valid_from": _taxii_time(row.valid_from or created),
        "confidence": row.confidence,
        "indicator_types": ["malicious-activity"],
    }
    if row.valid_until:
        obj["valid_until"] = _taxii_time(row.valid_until)
    if row.labels:
        obj["labels"] = list(row.labels)
    description = row.description or ", ".join(list(row.malware) + list(row.actors))
    if description:
        obj["description"] = description
    return obj


def taxii_router(title: str = TITLE, dependencies: Sequence[Any] = ()) -> APIRouter:
    """The TAXII 2.1 endpoints (read-only, one collection of every stored indicator) as a router, for
    the application's `state.store`; `dependencies` guard every endpoint (the service requires a
    signed-in principal or an API token there)."""
    router = APIRouter(prefix="/taxii2", dependencies=list(dependencies), include_in_schema=False)

    def taxii(content: Any, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(content, media_type=MEDIA_TYPE, headers=headers)

    collection = {
        "id": COLLECTION_ID,
        "title": "Tianmu indicators",
        "description": "Every indicator in this Tianmu's threat-intelligence base, all sources.",
        "can_read": True,
        "can_write": False,
        "media_types": ["application/stix+json;version=2.1"],
    }

    @router.get("/")
    def discovery(request: Request) -> JSONResponse:
        root = str(request.url_for("taxii_api_root"))
        return taxii({"title": title, "default": root, "api_roots": [root]})

    @router.get("/api/", name="taxii_api_root")
    def api_root() -> JSONResponse:
        return taxii({"title": title, "versions": [MEDIA_TYPE], "max_content_length": 10 * 1024 * 1024})

    @router.get("/api/collections/")
    def collections() -> JSONResponse:
        return taxii({"collections": [collection]})

    @router.get("/api/collections/{collection_id}/")
    def get_collection(collection_id: str) -> JSONResponse:
        if collection_id != COLLECTION_ID:
            raise HTTPException(404, "no such collection")
        return taxii(collection)

    @router.get("/api/collections/{collection_id}/objects/")
    def objects(
        request: Request,
        collection_id: str,
        added_after: str | None = None,
        limit: int = Query(_PAGE, ge=1, le=10_000),
        next: str | None = None,
    ) -> JSONResponse:
        if collection_id != COLLECTION_ID:
            raise HTTPException(404, "no such collection")
        try:
            after = _parse_time(added_after) if added_after else None
            offset = int(next) if next else 0
        except ValueError as exc:
            raise HTTPException(400, f"bad added_after or next: {exc}") from exc
        body, headers = _objects_page(request.app.state.store, after, limit, offset)
        return taxii(body, headers)

    return router


def create_taxii_app(store: Store, title: str = TITLE) -> FastAPI:
    """The TAXII endpoints alone, without sign-in (`tianmu intel serve`, which listens on 127.0.0.1 by
    default); `tianmu serve` mounts the same router behind its authentication."""
    app = FastAPI(title=title, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.store = store
    app.include_router(taxii_router(title))
    return app


def _objects_page(
    store: Store, after: datetime | None, limit: int, offset: int
) -> tuple[dict[str, Any], dict[str, str]]:
    # An indicator was added when its source was (last) imported: rows carry no time of their own.
    joined = intel_indicators.join(kb_sources, kb_sources.c.name == intel_indicators.c.source)
    query = select(intel_indicators, kb_sources.c.imported_at).select_from(joined)
    count_query = select(func.count()).select_from(joined)
    if after is not None:
        query = query.where(kb_sources.c.imported_at > after)
        count_query = count_query.where(kb_sources.c.imported_at > after)
    query = query.order_by(kb_sources.c.imported_at, intel_indicators.c.id).offset(offset).limit(limit)
    with store.connect() as conn:
        total = int(conn.execute(count_query).scalar() or 0)
        rows = conn.execute(query).all()
    if not rows:
        return {"more": False, "objects": []}, {}
    added = [r.imported_at if r.imported_at.tzinfo else r.imported_at.replace(tzinfo=UTC) for r in rows]
    body: dict[str, Any] = {
        "more": offset + len(rows) < total,
        "objects": [indicator_object(r, moment) for r, moment in zip(rows, added, strict=True)],
    }
    if body["more"]:
        body["next"] = str(offset + len(rows))
    headers = {
        "X-TAXII-Date-Added-First": _taxii_time(added[0]),
        "X-TAXII-Date-Added-Last": _taxii_time(added[-1]),
    }
    return body, headers
