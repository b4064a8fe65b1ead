"""A stored assessment's notes reach the API and the dashboard's asset page (before, they were lost at
the save: neither could show what the walk left out)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import T0, Platform, bearer, build_platform

from tianmu.core.models import Assessment, Asset, AssetKind
from tianmu.store.repository import save_assessment

NOTES = [
    "walk: /proc skipped (pseudo file system proc)",
    'walk: /srv/x/.tianmuignore refused: <script>alert("owned")</script>',
]


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    built = build_platform(tmp_path / "home")
    host = Asset("/", AssetKind.HOST, tenant="acme", label="web-01")
    when = T0 + timedelta(hours=5)
    run = Assessment(target="/", asset=host, started=when, finished=when, notes=NOTES, errors=["boom"])
    save_assessment(built.app.state.store, run)
    return built


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(platform.app, base_url="http://localhost:8000") as test_client:
        yield test_client


def test_api_and_dashboard_show_stored_notes(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    ids = {a["name"]: a["id"] for a in client.get("/api/v1/assets", headers=viewer).json()}
    runs = client.get(f"/api/v1/assets/{ids['/']}/assessments", headers=viewer).json()
    assert [r["notes"] for r in runs] == [NOTES] and runs[0]["errors"] == ["boom"]
    assert client.get("/api/v1/assets/999999/assessments", headers=viewer).status_code == 404
    page = client.get(f"/assets/{ids['/']}", headers=viewer).text
    section = page.split('data-testid="assessment-notes"', 1)[1].split("</section>", 1)[0]
    assert "walk: /proc skipped (pseudo file system proc)" in section and "boom" in section
    assert "<script>" not in section and "&lt;script&gt;" in section
    # An asset whose runs noted nothing shows no such section.
    other = client.get(f"/assets/{ids['/srv/shop']}", headers=viewer).text
    assert 'data-testid="assessment-notes"' not in other
