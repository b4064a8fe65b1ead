"""Every state change a person or token makes through the service reaches the audit chain: triage
(one, many, from the dashboard), incidents, assets, jobs submitted and cancelled, uploads, knowledge-base
imports — and no state-changing route exists that does not record (the route walk below)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

from tianmu.identity import IdentityService
from tianmu.identity.models import AuditEntry
from tianmu.service.api.audit import auditor

CHANGES = {"POST", "PUT", "PATCH", "DELETE"}
# Identity writes these to the chain itself (sign-ins, sessions, users, tokens, policies, tenants).
AUDITED_BY_IDENTITY = ("/api/auth/", "/auth/", "/api/v1/tenants")


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    (tmp_path / "srv").mkdir()
    return build_platform(tmp_path / "home", assess_roots=(("acme", (tmp_path / "srv",)),))


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    # No `with`: the runner is not started, so submitted jobs stay queued and can be cancelled.
    yield TestClient(platform.app, base_url="http://localhost:8000")


def _calls(dependant: Any) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def test_every_state_changing_route_records_to_the_audit_chain(platform: Platform) -> None:
    unaudited = []
    for route in platform.app.routes:
        if not isinstance(route, APIRoute) or not (route.methods & CHANGES):
            continue
        if route.path.startswith(AUDITED_BY_IDENTITY):
            continue
        if auditor not in set(_calls(route.dependant)):
            unaudited.append(f"{sorted(route.methods & CHANGES)} {route.path}")
    assert unaudited == []


def _last(platform: Platform, n: int = 1) -> list[AuditEntry]:
    identity: IdentityService = platform.app.state.identity
    return identity.audit.entries(tenant="acme", limit=n)


def _ids(client: TestClient, platform: Platform) -> list[int]:
    items = client.get("/api/v1/findings", headers=bearer(platform, "victor")).json()["items"]
    return [int(i["id"]) for i in items]


def test_triage_one_many_and_by_form(client: TestClient, platform: Platform) -> None:
    first, second, *_ = _ids(client, platform)
    response = client.patch(
        f"/api/v1/findings/{first}", headers=bearer(platform, "anna"), json={"status": "false_positive"}
    )
    assert response.status_code == 200
    (entry,) = _last(platform)
    assert (entry.actor, entry.action, entry.target) == ("anna", "finding.triage", str(first))
    assert entry.details["status"] == "false_positive" and entry.details["previous"] == "open"
    assert entry.details["via"] == "session"

    body = {"ids": [first, second], "status": "acknowledged"}
    assert client.post(
        "/api/v1/findings/triage", headers=bearer(platform, "alice-token"), json=body
    ).json() == {"changed": 2}
    (entry,) = _last(platform)
    assert (entry.actor, entry.details["via"], entry.details["ids"]) == (
        "alice",
        "token",
        sorted([first, second]),
    )

    form = {
        "ids": [str(second)],
        "status": "resolved",
        "csrf_token": bearer(platform, "anna")["X-CSRF-Token"],
    }
    assert (
        client.post(
            "/findings/triage", headers=bearer(platform, "anna"), data=form, follow_redirects=False
        ).status_code
        == 303
    )
    (entry,) = _last(platform)
    assert (entry.action, entry.target, entry.details["status"]) == (
        "finding.triage",
        str(second),
        "resolved",
    )


def test_incidents_assets_jobs_uploads_and_kb_imports(client: TestClient, platform: Platform) -> None:
    admin, analyst = bearer(platform, "alice"), bearer(platform, "anna")
    key = client.get("/api/v1/incidents", headers=analyst).json()[0]["id"]
    assert (
        client.patch(
            f"/api/v1/incidents/{key}", headers=analyst, json={"status": "resolved", "assignee": "bo"}
        ).status_code
        == 200
    )
    asset = client.get("/api/v1/assets", headers=admin).json()[0]["id"]
    assert client.patch(f"/api/v1/assets/{asset}", headers=admin, json={"criticality": 2}).status_code == 200
    srv = str(Path(platform.app.state.settings.home).parent / "srv")
    job = client.post(
        "/api/v1/jobs", headers=analyst, json={"kind": "assess", "params": {"path": srv}}
    ).json()
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=analyst).status_code == 200
    upload = client.post(
        "/api/v1/uploads/logs", headers=analyst, params={"filename": "=cmd.log"}, content=b"x\n"
    )
    assert upload.status_code == 202
    kb = client.post("/api/v1/kb/imports", headers=admin, params={"filename": "kev.json"}, content=b"{}")
    assert kb.status_code == 202
    entries = list(reversed(_last(platform, 6)))
    assert [(e.actor, e.action) for e in entries] == [
        ("anna", "incident.update"),
        ("alice", "asset.update"),
        ("anna", "job.submit"),
        ("anna", "job.cancel"),
        ("anna", "upload.logs"),
        ("alice", "kb.import"),
    ]
    incident, asset_entry, submitted, cancelled, uploaded, imported = entries
    assert (
        incident.target == key
        and incident.details["status"] == "resolved"
        and incident.details["assignee"] == "bo"
    )
    assert asset_entry.details["criticality"] == 2
    assert submitted.target == cancelled.target == job["id"] and submitted.details["params"]["path"] == srv
    assert uploaded.target == "=cmd.log" and uploaded.details["size"] == 2
    assert imported.details["job"] == kb.json()["id"]
    identity: IdentityService = platform.app.state.identity
    report = identity.audit.verify(identity.platform_key().public_key)
    assert report.ok, report.problems


def test_refused_changes_are_not_recorded_as_done(client: TestClient, platform: Platform) -> None:
    before = _last(platform)[0].seq
    first = _ids(client, platform)[0]
    denied = client.patch(
        f"/api/v1/findings/{first}", headers=bearer(platform, "victor"), json={"status": "resolved"}
    )
    assert denied.status_code == 403
    assert _last(platform)[0].seq == before


def test_triage_form_never_redirects_off_site(client: TestClient, platform: Platform) -> None:
    analyst = bearer(platform, "anna")
    first = _ids(client, platform)[0]
    for back in ("//evil.example/", "/\\evil.example/", "https://evil.example/"):
        form = {"ids": str(first), "status": "open", "back": back, "csrf_token": analyst["X-CSRF-Token"]}
        done = client.post("/findings/triage", headers=analyst, data=form, follow_redirects=False)
        assert done.headers["location"].startswith("/findings?"), back
