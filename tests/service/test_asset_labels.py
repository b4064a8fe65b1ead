"""Asset labels where people read them: the dashboard's asset list, asset page and overview, and the
API's asset JSON. Before, only the resolved path was shown (`/` for a host, a checkout's path), and the
API had no label."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import T0, Platform, _save, _vuln, bearer, build_platform

from tianmu.core.models import Asset, AssetKind, Severity

HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    built = build_platform(tmp_path / "home")
    root = Asset("/", AssetKind.HOST, tenant="acme", label="web-01.example.org")
    odd = Asset("/srv/odd", AssetKind.DIRECTORY, tenant="acme", label=HOSTILE)
    _save(
        built.app,
        root,
        [_vuln(root, "django", "3.2.0", "PYSEC-2026-1", Severity.CRITICAL, 1)],
        T0 + timedelta(hours=3),
    )
    _save(
        built.app,
        odd,
        [_vuln(odd, "flask", "1.0.0", "PYSEC-2026-2", Severity.HIGH, 1)],
        T0 + timedelta(hours=4),
    )
    return built


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(platform.app, base_url="http://localhost:8000") as test_client:
        yield test_client


def test_api_asset_json_has_the_label(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    listed = {a["name"]: a for a in client.get("/api/v1/assets", headers=viewer).json()}
    assert listed["/"]["label"] == "web-01.example.org"
    assert listed["/srv/odd"]["label"] == HOSTILE
    # An asset stored without a label is called by its path.
    assert listed["/srv/shop"]["label"] == "/srv/shop"
    one = client.get(f"/api/v1/assets/{listed['/']['id']}", headers=viewer).json()
    assert one["label"] == "web-01.example.org" and one["name"] == "/"
    top = {a["name"]: a for a in client.get("/api/v1/overview", headers=viewer).json()["top_assets"]}
    assert top["/"]["label"] == "web-01.example.org"


def test_dashboard_names_assets_by_label_and_path_escaped(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    ids = {a["name"]: a["id"] for a in client.get("/api/v1/assets", headers=viewer).json()}
    listing = client.get("/assets", headers=viewer).text
    assert (
        '<span data-testid="asset-label">web-01.example.org</span> <span class="muted mono">(/)</span>'
        in listing
    )
    assert HOSTILE not in listing and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in listing
    page = client.get(f"/assets/{ids['/']}", headers=viewer).text
    heading = page.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert "web-01.example.org" in heading and "(/)" in heading
    assert "<title>web-01.example.org (/)" in page
    odd = client.get(f"/assets/{ids['/srv/odd']}", headers=viewer).text
    assert HOSTILE not in odd and "(/srv/odd)" in odd
    overview = client.get("/", headers=viewer).text
    assert '<span data-testid="asset-label">web-01.example.org</span>' in overview
    assert HOSTILE not in overview
    # No label: the path alone, as before.
    assert '<span class="mono">/srv/shop</span>' in listing


def test_findings_name_their_asset_by_label(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    items = client.get("/api/v1/findings", headers=viewer, params={"limit": 1000}).json()["items"]
    by_rule = {i["rule"]: i for i in items}
    assert by_rule["PYSEC-2026-1"]["asset_label"] == "web-01.example.org"
    assert by_rule["PYSEC-2026-1"]["detail"]["asset"]["name"] == "/"
    assert by_rule["PYSEC-2026-2"]["asset_label"] == HOSTILE
    page = client.get(f"/findings/{by_rule['PYSEC-2026-1']['id']}", headers=viewer).text
    assert (
        '<span data-testid="asset-label">web-01.example.org</span> <span class="muted mono">(/)</span>'
        in page
    )
    odd = client.get(f"/findings/{by_rule['PYSEC-2026-2']['id']}", headers=viewer).text
    assert HOSTILE not in odd and "(/srv/odd)" in odd
