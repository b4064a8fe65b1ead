"""A findings export (CSV or JSON) carries the audit chain's tip, as every alert does: whoever keeps
exports holds a copy of the chain's progress outside the platform. A forged tip file cannot put a line
break into the header."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

from tianmu.identity import IdentityService
from tianmu.identity.audittip import TIP_FILE


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(tmp_path / "home")


@pytest.fixture
def client(platform: Platform) -> TestClient:
    return TestClient(platform.app, base_url="http://localhost:8000")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_carries_the_chains_tip(client: TestClient, platform: Platform, fmt: str) -> None:
    identity: IdentityService = platform.app.state.identity
    [last] = identity.audit.entries(limit=1)
    response = client.get(
        "/api/v1/findings/export", headers=bearer(platform, "victor"), params={"format": fmt}
    )
    assert response.status_code == 200
    assert response.headers["x-tianmu-audit-tip"] == f"seq={last.seq}; tip={last.hash}"


def test_a_forged_tip_file_is_sent_as_invalid(client: TestClient, platform: Platform) -> None:
    path = platform.app.state.settings.home / TIP_FILE
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "hash": "00\r\nSet-Cookie: tianmu_session=stolen"}))
    response = client.get("/api/v1/findings/export", headers=bearer(platform, "victor"))
    assert response.status_code == 200
    assert response.headers["x-tianmu-audit-tip"] == f"seq={record['seq']}; tip=invalid"
    assert "set-cookie" not in response.headers
