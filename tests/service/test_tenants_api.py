"""Tenants created through the API by owners of the operator tenant, and by nobody else."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from platform_data import PASSWORD, build_platform

from tianmu.core.config import Settings
from tianmu.identity import IdentityService, Role, cli_principal
from tianmu.service import ServiceSettings
from tianmu.service.platform import create_platform_app

ORIGIN = "http://localhost:8000"
Provider = tuple[TestClient, IdentityService, dict[str, dict[str, str]]]


def _session(app: FastAPI, identity: IdentityService, tenant: str, username: str) -> dict[str, str]:
    step = identity.password_login(tenant, username, PASSWORD)
    assert step.done and step.session_secret
    session = f"tianmu_session={step.session_secret}"
    # CSRF tokens are bound to their session: ask for one as this signed-in browser.
    minted = TestClient(app, base_url=ORIGIN).get("/api/auth/csrf", headers={"Cookie": session})
    csrf = minted.json()["csrf_token"]
    return {"Cookie": f"{session}; tianmu_csrf={minted.cookies['tianmu_csrf']}", "X-CSRF-Token": csrf}


@pytest.fixture
def provider(tmp_path: Path) -> Provider:
    core = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'tianmu.db'}", tenant="provider")
    settings = ServiceSettings(core=core, origin=ORIGIN, operator_tenant="provider")
    app = create_platform_app(settings, runner_kind="local")
    identity: IdentityService = app.state.identity
    identity.create_tenant("provider", "Managed security provider")
    identity.create_tenant("acme", "Acme")
    for tenant, username, role in (
        ("provider", "olga", Role.OWNER),
        ("provider", "oscar", Role.ADMIN),
        ("acme", "amy", Role.OWNER),
    ):
        identity.create_user(cli_principal(tenant), tenant, username, role, password=PASSWORD)
    people = (("provider", "olga"), ("provider", "oscar"), ("acme", "amy"))
    headers = {name: _session(app, identity, tenant, name) for tenant, name in people}
    return TestClient(app, base_url=ORIGIN), identity, headers


NEW = {"id": "initech", "name": "Initech", "owner": {"username": "ivy", "password": PASSWORD}}


def test_an_operator_owner_creates_a_tenant_with_its_owner(provider: Provider) -> None:
    client, identity, headers = provider
    created = client.post("/api/v1/tenants", json=NEW, headers=headers["olga"])
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "initech" and created.json()["owner"] == "ivy"
    # The new owner signs in to the new tenant and holds it; the operator has no account there.
    assert identity.password_login("initech", "ivy", PASSWORD).done
    assert [u.username for u in identity.list_users(cli_principal("initech"), "initech")] == ["ivy"]
    assert identity.get_user("initech", "ivy").role is Role.OWNER
    ivy = _session(client.app, identity, "initech", "ivy")  # type: ignore[arg-type]
    actions = {(e["action"], e["actor"]) for e in client.get("/api/auth/audit", headers=ivy).json()}
    assert ("tenant.create", "olga@provider") in actions and ("user.create", "olga@provider") in actions
    listed = client.get("/api/v1/tenants", headers=headers["olga"]).json()
    assert [t["id"] for t in listed] == ["acme", "initech", "provider"]
    assert client.post("/api/v1/tenants", json=NEW, headers=headers["olga"]).status_code == 409


def test_nobody_else_creates_tenants(provider: Provider) -> None:
    client, identity, headers = provider
    for who in ("oscar", "amy"):  # an admin of the operator tenant; an owner of a customer tenant
        assert client.post("/api/v1/tenants", json=NEW, headers=headers[who]).status_code == 403
        assert client.get("/api/v1/tenants", headers=headers[who]).status_code == 403
    assert client.post("/api/v1/tenants", json=NEW).status_code in (401, 403)
    assert [t.id for t in identity.list_tenants()] == ["acme", "provider"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({**NEW, "id": "Initech!"}, "tenant id"),
        ({**NEW, "owner": {"username": "ivy", "password": "short"}}, "password"),
        ({**NEW, "owner": {"username": "ivy smith", "password": PASSWORD}}, "user name"),
    ],
)
def test_bad_input_creates_nothing(provider: Provider, body: dict[str, object], reason: str) -> None:
    client, identity, headers = provider
    response = client.post("/api/v1/tenants", json=body, headers=headers["olga"])
    assert response.status_code == 400 and reason in response.text
    assert [t.id for t in identity.list_tenants()] == ["acme", "provider"]


def test_without_an_operator_tenant_the_api_creates_no_tenant(tmp_path: Path) -> None:
    platform = build_platform(tmp_path / "service")
    client = TestClient(platform.app, base_url=ORIGIN)
    response = client.post("/api/v1/tenants", json=NEW, headers=platform.headers["alice"])
    assert response.status_code == 403 and "no operator tenant" in response.text
