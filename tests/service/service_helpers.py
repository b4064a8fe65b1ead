"""Helpers for the web service tests: settings and an app seeded with one tenant and two users."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tianmu.core.config import Settings
from tianmu.identity import IdentityService, Role, cli_principal
from tianmu.service import ServiceSettings, create_app

PASSWORD = "correct horse battery"


def service_settings(home: Path, origin: str = "http://localhost:8000") -> ServiceSettings:
    core = Settings(home=home, database_url=f"sqlite:///{home / 'tianmu.db'}", tenant="acme")
    return ServiceSettings(core=core, origin=origin)


def seeded_app(home: Path, origin: str = "http://localhost:8000") -> FastAPI:
    home.mkdir(parents=True, exist_ok=True)
    app = create_app(service_settings(home, origin))
    identity: IdentityService = app.state.identity
    identity.create_tenant("acme", "Acme Corp")
    admin = cli_principal("acme")
    identity.create_user(admin, "acme", "alice", Role.ADMIN, password=PASSWORD)
    identity.create_user(admin, "acme", "victor", Role.VIEWER, password=PASSWORD)
    return app


def csrf(client: TestClient) -> dict[str, str]:
    token = client.get("/api/auth/csrf").json()["csrf_token"]
    return {"X-CSRF-Token": token}
