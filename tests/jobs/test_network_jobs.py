"""Jobs that reach the network (discover, web, domain) run the same library calls as the CLI: here
against servers on 127.0.0.1 only."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tianmu.core.config import Settings
from tianmu.core.errors import InputError
from tianmu.jobs import InProcessRunner, JobStatus, get_job, submit_job
from tianmu.store import Store
from tianmu.store.queries import FindingQuery, find_findings


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<title>Northwind intranet</title>")
    handler = lambda *a, **k: _Quiet(*a, directory=str(tmp_path / "site"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()


@pytest.fixture
def runner(sqlite_store: Store, tmp_path: Path) -> Iterator[InProcessRunner]:
    settings = Settings(home=tmp_path / "home", database_url="unused")
    run = InProcessRunner(sqlite_store, settings, workers=1)
    yield run
    run.shutdown()


def test_discover_job_finds_the_local_web_server(
    sqlite_store: Store, runner: InProcessRunner, web_server: int
) -> None:
    job, _ = submit_job(sqlite_store, runner, "discover", {"targets": "127.0.0.1", "ports": str(web_server)})
    assert runner.wait(job.id, 120).status == "done"
    done = get_job(sqlite_store, job.id)
    assert done is not None and done.status is JobStatus.DONE and done.result is not None
    assert done.result["hosts"] == 1 and done.result["ports_scanned"] == 1


def test_web_job_checks_the_site_and_stores_findings(
    sqlite_store: Store, runner: InProcessRunner, web_server: int
) -> None:
    job, _ = submit_job(sqlite_store, runner, "web", {"urls": [f"http://127.0.0.1:{web_server}/"]})
    assert runner.wait(job.id, 120).status == "done"
    done = get_job(sqlite_store, job.id)
    assert done is not None and done.result is not None and done.result["sites"] == 1
    stored = find_findings(sqlite_store, "default", FindingQuery(), limit=1000).items
    assert done.result["findings"] > 0 and len(stored) >= 1  # e.g. no security headers, no HTTPS


def test_network_jobs_refuse_bad_parameters(sqlite_store: Store, runner: InProcessRunner) -> None:
    with pytest.raises(InputError, match="parameter `targets` is required"):
        submit_job(sqlite_store, runner, "discover", {})
    with pytest.raises(InputError, match="parameter `urls` is required"):
        submit_job(sqlite_store, runner, "web", {"urls": []})
    with pytest.raises(InputError, match="parameter `domains` is required"):
        submit_job(sqlite_store, runner, "domain", {"domains": ""})
    job, _ = submit_job(sqlite_store, runner, "discover", {"targets": "8.8.8.8", "ports": "53"})
    assert runner.wait(job.id, 60).status == "failed"  # outside private ranges without authorisation
    failed = get_job(sqlite_store, job.id)
    assert failed is not None and failed.error is not None and "8.8.8.8" in failed.error
