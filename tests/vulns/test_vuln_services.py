"""Online update through a local HTTP server, and the knowledge base on PostgreSQL.

Nothing here touches the internet: `update()` gets a fetcher that rewrites the official URLs to a
tiny http.server on 127.0.0.1 serving fixture files.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from vulns_helpers import ASSET, FIXTURES, OSV_DIR, comp, make_zip, osv_files

from tianmu.store.database import Store
from tianmu.vulns.engine import VulnMatcher
from tianmu.vulns.kb import EPSS_URL, KEV_URL, import_path, kb_status, source_url, update

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    (root / "Go").mkdir(parents=True)
    make_zip(root / "Go" / "all.zip", {k: v for k, v in osv_files().items() if k.startswith("GO-")})
    (root / "kev.json").write_bytes((FIXTURES / "kev.json").read_bytes())
    (root / "epss.csv.gz").write_bytes(gzip.compress((FIXTURES / "epss_scores-2025-08-25.csv").read_bytes()))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_update_from_local_server(store: Store, served: str, tmp_path: Path) -> None:
    local = {
        source_url("osv:Go"): f"{served}/Go/all.zip",
        KEV_URL: f"{served}/kev.json",
        EPSS_URL: f"{served}/epss.csv.gz",
    }
    requested: list[str] = []

    def fetch(url: str) -> Path:
        requested.append(url)
        target = tmp_path / "dl" / url.rsplit("/", 1)[-1]
        target.parent.mkdir(exist_ok=True)
        with urllib.request.urlopen(local.get(url, f"{served}/missing"), timeout=10) as response:
            target.write_bytes(response.read())
        return target

    reports = update(store, sources=["osv:Go", "kev", "epss", "osv:npm"], fetch=fetch)
    assert requested[:3] == [source_url("osv:Go"), KEV_URL, EPSS_URL]
    summary = [(r.source, r.status, r.record_count) for r in reports]
    assert summary[:3] == [("osv:Go", "imported", 2), ("kev", "imported", 3), ("epss", "imported", 4)]
    assert reports[3].status == "failed" and reports[3].errors  # not served: reported, others unaffected
    origins = {s.name: s.origin for s in kb_status(store)}
    assert origins["osv:Go"] == "https://osv-vulnerabilities.storage.googleapis.com/Go/all.zip"
    again = update(store, sources=["osv:Go", "kev"], fetch=fetch)
    assert [r.status for r in again] == ["unchanged", "unchanged"]
    (f,) = VulnMatcher(store).match([comp("stdlib", "1.12.1", "Go")], ASSET)
    assert f.data["kev"] is True


def test_default_fetcher_downloads_into_data_dir(
    store: Store, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tianmu.vulns import kb

    monkeypatch.setattr(kb, "KEV_URL", f"{served}/kev.json")
    (report,) = update(store, sources=["kev"], data_dir=tmp_path / "home")
    assert report.status == "imported" and report.origin == f"{served}/kev.json"
    assert list((tmp_path / "home" / "downloads").iterdir()) == []  # the temporary file is removed


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except OperationalError as exc:
        return f"PostgreSQL unreachable at {PG_URL}: {exc.__class__.__name__}"
    return None


@pytest.mark.services
def test_postgresql_import_and_match() -> None:
    reason = _pg_available()
    if reason is not None:
        if os.environ.get("TIANMU_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"tianmu_vulns_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        store = Store(f"{PG_URL}?options=-csearch_path%3D{schema}")
        try:
            (report,) = import_path(store, OSV_DIR)
            assert report.added == 15
            import_path(store, FIXTURES / "kev.json")
            findings = VulnMatcher(store).match([comp("Django", "4.1.8"), comp("salt", "3000.1")], ASSET)
            assert [f.rule_id for f in findings] == ["PYSEC-2020-102", "PYSEC-2023-61"]
            assert findings[0].data["kev"] is True
            assert import_path(store, OSV_DIR)[0].status == "unchanged"
        finally:
            store.close()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
