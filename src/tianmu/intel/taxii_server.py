"""Tianmu's own read-only TAXII 2.1 endpoint (FastAPI), apart from the pull client.

`taxii_router()` has the TAXII 2.1 discovery, API root, collections and get-objects endpoints
(read-only), publishing every stored indicator as a STIX 2.1 indicator in one collection, with
`added_after`, `limit` and `next` paging. It lets other tools (and another Tianmu) subscribe to what
this one knows: `tianmu serve` mounts it at /taxii2/ behind sign-in (an API token as Bearer
credential), `create_taxii_app(store)` serves it alone for `tianmu intel serve`. A module of its own
so that pulling a feed (`tianmu kb update`) never loads the web framework.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from tianmu.intel.taxii import COLLECTION_ID, MEDIA_TYPE, NAMESPACE, TITLE, parse_taxii_time, taxii_time
from tianmu.store.database import Store
from tianmu.store.schema import intel_indicators, kb_sources

__all__ = ["create_taxii_app", "indicator_object", "taxii_router"]

_PAGE = 500


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
    ident = uuid.uuid5(NAMESPACE, f"{row.source}\t{row.type}\t{row.value}")
    stamp = taxii_time(created)
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{ident}",
        "created": stamp,
        "modified": stamp,
        "name": row.value,
        "pattern": _pattern(row.type, row.value),
        "pattern_type": "stix",
        "valid_from": taxii_time(row.valid_from or created),
        "confidence": row.confidence,
        "indicator_types": ["malicious-activity"],
    }
    if row.valid_until:
        obj["valid_until"] = taxii_time(row.valid_until)
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
            after = parse_taxii_time(added_after) if added_after else None
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
        "X-TAXII-Date-Added-First": taxii_time(added[0]),
        "X-TAXII-Date-Added-Last": taxii_time(added[-1]),
    }
    return body, headers
