"""The service's TAXII 2.1 endpoint: behind sign-in, and pulled by another Tianmu with an API token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

from testsupport import free_port, serve_app
from tianmu.intel.engine import IntelMatcher
from tianmu.intel.kb import import_feed
from tianmu.intel.taxii import COLLECTION_ID, MEDIA_TYPE, pull_into
from tianmu.store.database import Store


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    platform = build_platform(tmp_path / "service")
    feed = tmp_path / "c2.txt"
    feed.write_text("# our analysts' list\nbeacon.nightjar.example\n198.51.100.23\n", encoding="utf-8")
    import_feed(platform.app.state.store, feed, home=tmp_path / "service", source="analysts")
    return platform


def test_taxii_needs_a_signed_in_user_or_token(platform: Platform) -> None:
    client = TestClient(platform.app, base_url="http://localhost:8000")
    for path in ("/taxii2/", f"/taxii2/api/collections/{COLLECTION_ID}/objects/"):
        assert client.get(path, headers={"Accept": MEDIA_TYPE}).status_code == 401
    discovery = client.get("/taxii2/", headers=bearer(platform, "alice-token"))
    assert discovery.status_code == 200
    assert discovery.headers["content-type"].startswith("application/taxii+json")
    assert discovery.json()["default"] == "http://localhost:8000/taxii2/api/"
    # A viewer of another tenant reads it too: the intelligence base is the installation's, not a tenant's.
    objects = client.get(
        f"/taxii2/api/collections/{COLLECTION_ID}/objects/", headers=bearer(platform, "gina")
    )
    patterns = {o["pattern"] for o in objects.json()["objects"]}
    assert "[domain-name:value = 'beacon.nightjar.example']" in patterns
    assert "[ipv4-addr:value = '198.51.100.23']" in patterns


@pytest.fixture
def served(platform: Platform) -> Iterator[str]:
    port = free_port()
    with serve_app(platform.app, port):
        yield f"http://127.0.0.1:{port}"


def test_another_tianmu_pulls_with_an_api_token(platform: Platform, served: str, tmp_path: Path) -> None:
    url = f"{served}/taxii2/api/collections/{COLLECTION_ID}/"
    client = Store(f"sqlite:///{tmp_path / 'client.db'}")
    try:
        refused = pull_into(client, url, home=tmp_path / "client")
        assert refused.status == "failed" and "401" in refused.errors[0]
        token = platform.headers["alice-token"]["Authorization"].removeprefix("Bearer ")
        report = pull_into(client, url, home=tmp_path / "client", token=token)
        assert report.status == "imported" and report.record_count == 2, report.errors
        matcher = IntelMatcher.open(client, tmp_path / "client")
        assert matcher.lookup("beacon.nightjar.example")[0].sources == (f"taxii:{url.rstrip('/')}",)
    finally:
        client.close()
