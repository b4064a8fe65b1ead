"""TAXII 2.1: pulls from an in-memory collection (no server), and end to end: Tianmu's read-only endpoint
served by uvicorn on 127.0.0.1, pulled with paging."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from intel_helpers import build_stix_bundle
from taxii_twin import MemoryTaxiiCollection

from testsupport import free_port, serve_app
from tianmu.intel.engine import IntelMatcher
from tianmu.intel.kb import import_feed
from tianmu.intel.taxii import COLLECTION_ID, MEDIA_TYPE, pull_into
from tianmu.intel.taxii_server import create_taxii_app
from tianmu.road.knowledge import kb_status
from tianmu.store.database import Store


@pytest.fixture
def server(loaded: Store) -> Iterator[str]:
    port = free_port()
    with serve_app(create_taxii_app(loaded), port):
        yield f"http://127.0.0.1:{port}"


def test_discovery_and_collections(server: str) -> None:
    discovery = httpx.get(f"{server}/taxii2/", headers={"Accept": MEDIA_TYPE})
    assert discovery.headers["content-type"].startswith("application/taxii+json")
    root = discovery.json()["default"]
    collections = httpx.get(f"{root}collections/").json()["collections"]
    assert [c["id"] for c in collections] == [COLLECTION_ID]
    assert collections[0]["can_write"] is False
    assert httpx.get(f"{root}collections/nope/objects/").status_code == 404


@pytest.fixture
def client_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'client.db'}")
    yield store
    store.close()


def test_pull_pages_and_then_only_what_was_added(
    loaded: Store, server: str, client_store: Store, tmp_path: Path, home: Path
) -> None:
    sqlite_store = client_store
    url = f"{server}/taxii2/api/collections/{COLLECTION_ID}/"
    client_home = tmp_path / "client-home"
    first = pull_into(sqlite_store, url, home=client_home, per_request=4)
    assert first.status == "imported", first.errors
    assert first.record_count >= 20  # every source's indicators, several pages of four
    matcher = IntelMatcher.open(sqlite_store, client_home)
    [record] = matcher.lookup("a.nightowl-c2.example")
    assert record.sources == (f"taxii:{url.rstrip('/')}",) and record.confidence == 90
    assert matcher.lookup("198.51.100.9")[0].value == "198.51.100.0/25"
    assert matcher.scan_text("ua NightOwl/2.1") == []  # user agents match fields, not free text
    assert matcher.match_values([("cs-user-agent", "NightOwl/2.1")])

    time.sleep(0.01)
    feed = tmp_path / "late.txt"
    feed.write_text("late-addition.example\n", encoding="utf-8")
    import_feed(loaded, feed, home=home)
    second = pull_into(sqlite_store, url, home=client_home, per_request=4)
    assert (second.status, second.added, second.record_count) == ("updated", 1, first.record_count + 1)
    [row] = [r for r in kb_status(sqlite_store) if r.name.startswith("taxii:")]
    assert row.record_count == first.record_count + 1
    third = pull_into(sqlite_store, url, home=client_home)
    assert third.status == "unchanged"
    assert IntelMatcher.open(sqlite_store, client_home).lookup("late-addition.example")


def test_pull_from_nowhere_fails_cleanly(sqlite_store: Store, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/taxii2/api/collections/{COLLECTION_ID}/"
    report = pull_into(sqlite_store, url, home=tmp_path)
    assert report.status == "failed" and report.errors and url in report.errors[0]


def test_pull_from_an_in_memory_collection_pages_and_resumes(sqlite_store: Store, tmp_path: Path) -> None:
    partner = MemoryTaxiiCollection(token="partner-token")
    objects = build_stix_bundle()["objects"]
    assert isinstance(objects, list)
    partner.add(datetime(2026, 3, 1, tzinfo=UTC), objects)
    transport = partner.transport()
    first = pull_into(
        sqlite_store, partner.url, home=tmp_path, token="partner-token", per_request=10, transport=transport
    )
    assert first.status == "imported", first.errors
    pages = [r for r in partner.requests if r.url.path.endswith("/objects/")]
    assert len(pages) == -(-len(objects) // 10)  # every page of ten, through `next`
    assert "added_after" not in pages[0].url.params
    assert any("bad" in error or "pattern" in error for error in first.errors)  # the broken object
    [record] = IntelMatcher.open(sqlite_store, tmp_path).lookup("nightowl-c2.example")
    assert record.sources == (f"taxii:{partner.url.rstrip('/')}",) and record.confidence == 90

    partner.requests.clear()
    late = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--3b1f2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "created": "2026-03-02T00:00:00Z",
        "modified": "2026-03-02T00:00:00Z",
        "pattern": "[domain-name:value = 'late-addition.example']",
        "pattern_type": "stix",
        "valid_from": "2026-03-02T00:00:00Z",
    }
    partner.add(datetime(2026, 3, 2, tzinfo=UTC), [late])
    second = pull_into(sqlite_store, partner.url, home=tmp_path, token="partner-token", transport=transport)
    assert (second.status, second.added) == ("updated", 1)
    [asked] = [r for r in partner.requests if r.url.path.endswith("/objects/")]
    assert asked.url.params["added_after"] == "2026-03-01T00:00:00.000000Z"
    assert IntelMatcher.open(sqlite_store, tmp_path).lookup("late-addition.example")
    assert (
        pull_into(sqlite_store, partner.url, token="partner-token", transport=transport).status == "unchanged"
    )


def test_pull_refused_by_an_in_memory_collection_stores_nothing(sqlite_store: Store, tmp_path: Path) -> None:
    partner = MemoryTaxiiCollection(token="right")
    objects = build_stix_bundle()["objects"]
    assert isinstance(objects, list)
    partner.add(datetime(2026, 3, 1, tzinfo=UTC), objects[:3])
    report = pull_into(sqlite_store, partner.url, home=tmp_path, token="wrong", transport=partner.transport())
    assert report.status == "failed" and "401" in report.errors[0]
    assert not [r for r in kb_status(sqlite_store) if r.name.startswith("taxii:")]
