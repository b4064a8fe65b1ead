"""The API's job JSON is honest: an SBOM upload that could not be read fails with the reason, and a job
that read part of its input says `partial` with its errors (issue 21: a 400 MB SBOM job ended "done"
with 0 components, the error only in the stored assessment). Both failed on the code before."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

# A CycloneDX SBOM cut short, as an upload that broke off.
BROKEN_SBOM = b'{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [ {"name": '


@pytest.fixture
def server(tmp_path: Path) -> Path:
    root = tmp_path / "srv" / "acme" / "shop"
    (root / "sbom").mkdir(parents=True)
    (root / "sbom" / "bom.cdx.json").write_bytes(BROKEN_SBOM)
    (root / "app").mkdir()
    (root / "app" / "requirements.txt").write_text("django==3.2.0\n", encoding="utf-8")
    return root


@pytest.fixture
def client(tmp_path: Path, server: Path) -> Iterator[tuple[TestClient, Platform]]:
    platform = build_platform(tmp_path / "home", assess_roots=(("acme", (server.parent,)),))
    with TestClient(platform.app, base_url="http://localhost:8000") as test_client:
        yield test_client, platform


def _wait(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 180  # a guard against a hang, not a timing: the machine is shared
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_an_unreadable_sbom_upload_fails_with_the_reason(client: tuple[TestClient, Platform]) -> None:
    test_client, platform = client
    analyst = bearer(platform, "anna")
    response = test_client.post(
        "/api/v1/uploads/sbom", headers=analyst, params={"filename": "bom.cdx.json"}, content=BROKEN_SBOM
    )
    assert response.status_code == 202, response.text
    job = _wait(test_client, analyst, response.json()["id"])
    assert job["status"] == "failed", job
    assert "none of the 1 inventory file(s) could be read" in str(job["error"])
    assert "bom.cdx.json:1: invalid JSON" in str(job["error"])
    result = job["result"]
    assert isinstance(result, dict) and result["components"] == 0 and result["error_count"] == 1
    assert result["partial"] is False


def test_a_partly_read_job_is_done_and_partial(client: tuple[TestClient, Platform], server: Path) -> None:
    test_client, platform = client
    analyst = bearer(platform, "anna")
    body = {"kind": "assess", "params": {"path": str(server), "engines": "vulnerability"}}
    response = test_client.post("/api/v1/jobs", headers=analyst, json=body)
    assert response.status_code == 202, response.text
    job = _wait(test_client, analyst, response.json()["id"])
    assert job["status"] == "done", job
    result = job["result"]
    assert isinstance(result, dict) and result["partial"] is True and result["error_count"] == 1
    assert result["components"] == 1
    assert str(result["errors"][0]).startswith("sbom/bom.cdx.json:1: invalid JSON")
