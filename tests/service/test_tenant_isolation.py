"""Tenant isolation, walked over every route: a user of acme can read or change nothing of globex.

The walk is over the application's own route table, so a route added later is covered without anyone
remembering to add it here; a route whose path parameter this test does not know fails the test until
it is taught which foreign value to try.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

from tianmu.identity import Principal, Role
from tianmu.store.queries import find_findings, get_asset

# Path parameters that are not ids of another tenant's data, and why.
NOT_TENANT_DATA = {
    (
        "/api/v1/uploads/{what}",
        "what",
    ): "the kind of upload (logs, sbom); the data is placed in the caller's tenant",
    (
        "/taxii2/api/collections/{collection_id}/",
        "collection_id",
    ): "the TAXII collection of the installation's intelligence base (not a tenant's)",
    (
        "/taxii2/api/collections/{collection_id}/objects/",
        "collection_id",
    ): "the TAXII collection of the installation's intelligence base (not a tenant's)",
}
# Path parameters that are search terms, not ids: the answer is the caller's own data about the term, so
# the walk expects a success that discloses nothing of the other tenant.
SEARCHES = {
    (
        "/api/v1/trace/{value}",
        "value",
    ): "an entity to trace (IP, user, hash, host) within the caller's tenant",
}
# Routes the walk leaves out, and why.
NOT_WALKED = {
    "/api/auth/logout": "ends the walking user's own session (it has no foreign target)",
    "/auth/sign-out": "ends the walking user's own session (it has no foreign target)",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Platform:
    return build_platform(tmp_path_factory.mktemp("isolation") / "home")


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(platform.app, base_url="http://localhost:8000") as test_client:
        yield test_client


def _flatten(routes: list[Any]) -> Iterator[tuple[set[str], str]]:
    """(methods, path) of every endpoint, through included routers (FastAPI resolves them lazily)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield set(route.methods), route.path
        elif hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                yield set(context.methods or ()), context.path


def _routes(platform: Platform) -> list[tuple[str, str]]:
    found = []
    for methods, path in _flatten(platform.app.routes):
        if path not in NOT_WALKED:
            found += [(method, path) for method in sorted(methods) if method != "HEAD"]
    return found


def _foreign_markers(platform: Platform) -> list[str]:
    store = platform.app.state.store
    finding = find_findings(store, "globex").items[-1]
    asset = get_asset(store, "globex", int(platform.foreign["asset_id"]))
    assert asset is not None
    gina = platform.app.state.identity.get_user("globex", "gina")
    # What only globex's data contains (not ids the walker itself sends, which errors may echo).
    return [asset.asset.name, finding.finding.fingerprint, "globex-automation", gina.id, "gina's laptop"]


def test_the_walk_covers_the_situation_routes(platform: Platform) -> None:
    paths = {path for _method, path in _routes(platform)}
    for expected in (
        "/api/v1/findings/{finding_id}",
        "/api/v1/assets/{asset_id}",
        "/api/v1/jobs/{job_id}",
        "/api/auth/users/{username}",
        "/",
        "/incidents/{key}",
    ):
        assert expected in paths
    assert len(paths) > 40


def test_no_route_reads_or_changes_another_tenants_data(client: TestClient, platform: Platform) -> None:
    store = platform.app.state.store
    markers = _foreign_markers(platform)
    before = find_findings(store, "globex").items[0].finding.status
    admin = bearer(platform, "alice")  # the most powerful acme user
    bodies = {
        "PATCH": {"status": "resolved", "criticality": 1},
        "POST": {"ids": [int(platform.foreign["finding_id"])], "status": "resolved", "kind": "reassess"},
    }
    for method, path in _routes(platform):
        params = re.findall(r"{(\w+)}", path)
        unknown = [
            p
            for p in params
            if p not in platform.foreign and (path, p) not in NOT_TENANT_DATA and (path, p) not in SEARCHES
        ]
        assert not unknown, f"{method} {path}: the walk does not know a foreign value for {unknown}"
        url = path
        for name in params:
            url = url.replace("{" + name + "}", platform.foreign.get(name, "logs"))
        if (path, "what") in NOT_TENANT_DATA:
            continue  # uploads land in the caller's tenant: covered by test_platform_api
        response = client.request(
            method,
            url,
            headers=admin,
            json=bodies.get(method),
            params={"filename": "x.log", "format": "json"},
        )
        where = f"{method} {url} -> {response.status_code}"
        if any((path, p) in SEARCHES for p in params):
            assert response.status_code == 200, where
        elif params:
            assert response.status_code in (403, 404, 422), where
        text = response.text
        for marker in markers:
            assert marker not in text, f"{where} disclosed {marker!r}"
    after = find_findings(store, "globex").items[0].finding.status
    assert after == before  # nothing of globex changed
    passkeys = platform.app.state.identity.list_passkeys(_gina(platform))
    assert [p["name"] for p in passkeys] == ["gina's laptop"]


def test_foreign_ids_in_bodies_are_ignored(client: TestClient, platform: Platform) -> None:
    response = client.post(
        "/api/v1/findings/triage",
        headers=bearer(platform, "alice"),
        json={"ids": [int(platform.foreign["finding_id"])], "status": "false_positive"},
    )
    assert response.json() == {"changed": 0}
    exported = client.get(
        "/api/v1/findings/export", headers=bearer(platform, "alice"), params={"format": "json"}
    )
    assert all(item["asset"]["name"] != "/srv/globex-secret" for item in json.loads(exported.text))


def test_globex_sees_its_own(client: TestClient, platform: Platform) -> None:
    mine = client.get("/api/v1/findings", headers=bearer(platform, "gina")).json()["items"]
    assert int(platform.foreign["finding_id"]) in {i["id"] for i in mine} and len(mine) == 2
    assert {Path(i["detail"]["asset"]["name"]).name for i in mine} == {"globex-secret"}
    incidents = client.get("/api/v1/incidents", headers=bearer(platform, "gina")).json()
    assert [i["id"] for i in incidents] == [platform.foreign["key"]]


def _gina(platform: Platform) -> Principal:
    gina = platform.app.state.identity.get_user("globex", "gina")
    return Principal(user_id=gina.id, tenant="globex", username="gina", role=Role.ADMIN, via="session")
