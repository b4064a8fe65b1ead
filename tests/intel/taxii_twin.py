"""An in-memory TAXII 2.1 collection, answered through `httpx.MockTransport`: a partner's server, no socket.

It keeps (date added, STIX object) pairs and answers the two requests a pull makes — the collection
resource and its objects, with `added_after`, `limit` and `next` paging and the `X-TAXII-Date-Added-*`
headers — as TAXII 2.1 §5 describes them. Every request is recorded, so a test can see what was asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

MEDIA = "application/taxii+json;version=2.1"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class MemoryTaxiiCollection:
    url: str = "https://taxii.partner.example/api1/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/"
    token: str | None = None
    """When set, every request must carry `Authorization: Bearer <token>`."""
    objects: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def add(self, added: datetime, objects: list[dict[str, Any]]) -> None:
        self.objects.extend((added, obj) for obj in objects)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.Response(status, json=body, headers={"Content-Type": MEDIA, **(headers or {})})

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return self._reply(401, {"title": "unauthorized"})
        path = str(request.url.copy_with(query=None))
        if path == self.url:
            return self._reply(
                200,
                {
                    "id": self.url.rstrip("/").rsplit("/", 1)[1],
                    "title": "Partner indicators",
                    "can_read": True,
                    "can_write": False,
                    "media_types": ["application/stix+json;version=2.1"],
                },
            )
        if path != self.url + "objects/":
            return self._reply(404, {"title": "not found"})
        params = request.url.params
        chosen = sorted(self.objects, key=lambda pair: pair[0])
        if "added_after" in params:
            after = datetime.fromisoformat(params["added_after"].replace("Z", "+00:00"))
            chosen = [pair for pair in chosen if pair[0] > after]
        offset = int(params.get("next", "0"))
        limit = int(params.get("limit", "100"))
        page = chosen[offset : offset + limit]
        if not page:
            return self._reply(200, {"more": False})
        more = offset + len(page) < len(chosen)
        body: dict[str, Any] = {"more": more, "objects": [obj for _added, obj in page]}
        if more:
            body["next"] = str(offset + len(page))
        headers = {
            "X-TAXII-Date-Added-First": _stamp(page[0][0]),
            "X-TAXII-Date-Added-Last": _stamp(page[-1][0]),
        }
        return self._reply(200, body, headers)
