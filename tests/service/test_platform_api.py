"""The REST API over the situation: findings, assets, components, jobs, uploads, knowledge bases, overview."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    # The operator lets acme's jobs read the test fixtures on the server (TIANMU_ASSESS_ROOTS).
    return build_platform(tmp_path / "home", assess_roots=(("acme", (REPO / "tests" / "fixtures",)),))


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(platform.app, base_url="http://localhost:8000") as test_client:
        yield test_client


def test_every_route_needs_a_principal(client: TestClient) -> None:
    for path in ("/api/v1/findings", "/api/v1/overview", "/api/v1/assets", "/api/v1/jobs", "/api/v1/kb"):
        assert client.get(path).status_code == 401, path
    assert client.get("/api/v1/findings", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_findings_filter_sort_page_and_read(client: TestClient, platform: Platform) -> None:
    auth = bearer(platform, "victor")
    everything = client.get("/api/v1/findings", headers=auth, params={"limit": 1000}).json()
    assert len(everything["items"]) == 6 and everything["next_cursor"] is None
    high = client.get(
        "/api/v1/findings", headers=auth, params={"min_severity": "high", "sort": "severity"}
    ).json()
    assert [i["severity"] for i in high["items"]] == ["critical", "high", "high", "high", "high"]
    kev = client.get("/api/v1/findings", headers=auth, params={"kev": "true"}).json()["items"]
    assert [i["rule"] for i in kev] == ["PYSEC-2020-102"] and kev[0]["detail"]["kev"] is True
    detections = client.get("/api/v1/findings", headers=auth, params=[("kind", "detection")]).json()["items"]
    assert {d["rule"] for d in detections} == {"ssh-bruteforce", "new-user"}
    first = client.get("/api/v1/findings", headers=auth, params={"limit": 4}).json()
    rest = client.get(
        "/api/v1/findings", headers=auth, params={"limit": 4, "cursor": first["next_cursor"]}
    ).json()
    assert len(first["items"]) == 4 and len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in rest["items"]}
    one = client.get(f"/api/v1/findings/{kev[0]['id']}", headers=auth).json()
    assert one["detail"]["component"]["name"] == "salt" and one["detail"]["fixed_versions"] == ["9.9.9"]
    bad = client.get("/api/v1/findings", headers=auth, params={"cursor": "garbage"})
    assert bad.status_code == 422 and "invalid cursor" in bad.json()["detail"]
    assert client.get("/api/v1/findings", headers=auth, params={"severity": "apocalyptic"}).status_code == 422


def test_triage_needs_the_permission_and_is_kept(client: TestClient, platform: Platform) -> None:
    items = client.get("/api/v1/findings", headers=bearer(platform, "victor")).json()["items"]
    target = items[0]["id"]
    denied = client.patch(
        f"/api/v1/findings/{target}", headers=bearer(platform, "victor"), json={"status": "resolved"}
    )
    assert denied.status_code == 403
    done = client.patch(
        f"/api/v1/findings/{target}", headers=bearer(platform, "anna"), json={"status": "false_positive"}
    )
    assert done.status_code == 200 and done.json()["status"] == "false_positive"
    ids = [i["id"] for i in items[1:3]]
    bulk = client.post(
        "/api/v1/findings/triage",
        headers=bearer(platform, "anna"),
        json={"ids": ids, "status": "acknowledged"},
    )
    assert bulk.json() == {"changed": 2}
    statuses = {
        i["id"]: i["status"]
        for i in client.get("/api/v1/findings", headers=bearer(platform, "anna")).json()["items"]
    }
    assert statuses[target] == "false_positive" and {statuses[i] for i in ids} == {"acknowledged"}
    bad = client.post(
        "/api/v1/findings/triage", headers=bearer(platform, "anna"), json={"ids": [], "status": "open"}
    )
    assert bad.status_code == 422


def test_export_csv_and_json_follow_the_filters(client: TestClient, platform: Platform) -> None:
    auth = bearer(platform, "victor")
    response = client.get(
        "/api/v1/findings/export", headers=auth, params={"format": "csv", "kind": "vulnerability"}
    )
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 4 and {r["kind"] for r in rows} == {"vulnerability"}
    salt = next(r for r in rows if r["rule"] == "PYSEC-2020-102")
    assert (
        salt["kev"] == "yes" and salt["where"] == "requirements.txt:12" and salt["component"] == "salt 3000.1"
    )
    as_json = client.get(
        "/api/v1/findings/export", headers=auth, params={"format": "json", "kind": "detection"}
    ).json()
    assert {f["finding_id"] for f in as_json} <= {
        f["id"] for f in client.get("/api/v1/findings", headers=auth).json()["items"]
    }
    assert {f["kind"] for f in as_json} == {"detection"} and len(as_json) == 2


def test_overview_counts(client: TestClient, platform: Platform) -> None:
    data = client.get("/api/v1/overview", headers=bearer(platform, "victor")).json()
    assert data["open_findings"] == 6 and data["assets"] == 2
    assert data["by_severity"] == {"critical": 1, "high": 4, "medium": 1, "low": 0, "info": 0}
    assert data["kev_open"] == 1 and data["by_kind"]["detection"] == 2
    assert data["top_assets"][0]["name"] == "/srv/shop"


def test_assets_components_and_criticality(client: TestClient, platform: Platform) -> None:
    assets = client.get("/api/v1/assets", headers=bearer(platform, "victor")).json()
    shop = next(a for a in assets if a["name"] == "/srv/shop")
    assert shop["components"] == 4 and shop["open_by_severity"]["critical"] == 1
    comps = client.get(f"/api/v1/assets/{shop['id']}/components", headers=bearer(platform, "victor")).json()
    assert {c["name"] for c in comps} == {"Django", "salt", "urllib3", "PyYAML"}
    assert [
        c["name"]
        for c in client.get(
            "/api/v1/components", headers=bearer(platform, "victor"), params={"name": "yam"}
        ).json()
    ] == ["PyYAML"]
    denied = client.patch(
        f"/api/v1/assets/{shop['id']}", headers=bearer(platform, "victor"), json={"criticality": 1}
    )
    assert denied.status_code == 403
    changed = client.patch(
        f"/api/v1/assets/{shop['id']}",
        headers=bearer(platform, "anna"),
        json={"criticality": 2, "tags": ["prod", "pci"]},
    )
    assert changed.json()["criticality"] == 2 and changed.json()["tags"] == ["pci", "prod"]
    assert (
        client.patch(
            f"/api/v1/assets/{shop['id']}", headers=bearer(platform, "anna"), json={"criticality": 9}
        ).status_code
        == 422
    )


def _wait(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_jobs_submit_follow_and_idempotency(client: TestClient, platform: Platform) -> None:
    admin = bearer(platform, "alice")
    target = REPO / "tests" / "fixtures" / "cli" / "target"
    body = {"kind": "assess", "params": {"path": str(target), "engines": "vulnerability"}}
    first = client.post("/api/v1/jobs", headers={**admin, "Idempotency-Key": "weekly-1"}, json=body)
    again = client.post("/api/v1/jobs", headers={**admin, "Idempotency-Key": "weekly-1"}, json=body)
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    job = _wait(client, admin, first.json()["id"])
    assert job["status"] == "done" and job["submitted_by"] == "alice"
    assert isinstance(job["result"], dict) and job["result"]["components"] > 0
    elsewhere = {"kind": "assess", "params": {"path": str(REPO / "src")}}
    analyst = client.post("/api/v1/jobs", headers=bearer(platform, "anna"), json=elsewhere)
    assert analyst.status_code == 403  # server paths only under the tenant's roots (tests/hostile)
    viewer = client.post("/api/v1/jobs", headers=bearer(platform, "victor"), json={"kind": "reassess"})
    assert viewer.status_code == 403
    bad = client.post("/api/v1/jobs", headers=admin, json={"kind": "assess", "params": {}})
    assert bad.status_code == 422 and "path" in bad.json()["detail"]
    listed = client.get("/api/v1/jobs", headers=bearer(platform, "victor")).json()
    assert [j["id"] for j in listed] == [first.json()["id"]]


def test_log_upload_is_streamed_limited_and_assessed(client: TestClient, platform: Platform) -> None:
    analyst = bearer(platform, "anna")
    log = (REPO / "demo" / "target" / "logs" / "auth.log").read_bytes()
    response = client.post(
        "/api/v1/uploads/logs", headers=analyst, params={"filename": "../../auth.log"}, content=log
    )
    assert response.status_code == 202, response.text
    job = _wait(client, analyst, response.json()["id"])
    assert job["status"] == "done", job
    kept = list((platform.app.state.settings.home / "uploads" / "acme").glob("*/auth.log"))
    assert len(kept) == 1 and kept[0].read_bytes() == log  # the name was made safe, the bytes kept
    platform.app.state.max_upload_bytes = 1000
    too_big = client.post(
        "/api/v1/uploads/logs", headers=analyst, params={"filename": "big.log"}, content=b"x" * 5000
    )
    assert too_big.status_code == 413
    empty = client.post("/api/v1/uploads/sbom", headers=analyst, params={"filename": "bom.json"}, content=b"")
    assert empty.status_code == 400
    assert (
        client.post(
            "/api/v1/uploads/pictures", headers=analyst, params={"filename": "a"}, content=b"x"
        ).status_code
        == 404
    )


def test_kb_status_and_admin_only_imports(client: TestClient, platform: Platform) -> None:
    assert client.get("/api/v1/kb", headers=bearer(platform, "victor")).json() == []
    kev = (REPO / "demo" / "kb" / "kev" / "known_exploited_vulnerabilities.json").read_bytes()
    denied = client.post(
        "/api/v1/kb/imports", headers=bearer(platform, "anna"), params={"filename": "kev.json"}, content=kev
    )
    assert denied.status_code == 403
    accepted = client.post(
        "/api/v1/kb/imports", headers=bearer(platform, "alice"), params={"filename": "kev.json"}, content=kev
    )
    assert accepted.status_code == 202
    assert _wait(client, bearer(platform, "alice"), accepted.json()["id"])["status"] == "done"
    sources = client.get("/api/v1/kb", headers=bearer(platform, "victor")).json()
    assert [(s["name"], s["record_count"]) for s in sources] == [("kev", 5)]


def test_cookie_clients_need_csrf_for_changes(client: TestClient, platform: Platform) -> None:
    headers = {"X-CSRF-Token": client.get("/api/auth/csrf").json()["csrf_token"]}
    signed_in = client.post(
        "/api/auth/login/password",
        json={"username": "anna", "password": "correct horse battery"},
        headers=headers,
    )
    assert signed_in.status_code == 200, signed_in.text
    items = client.get("/api/v1/findings").json()["items"]
    body = {"ids": [items[0]["id"]], "status": "acknowledged"}
    assert client.post("/api/v1/findings/triage", json=body).status_code == 403
    # the token of before sign-in is bound to no session: the signed-in client asks for its own
    assert client.post("/api/v1/findings/triage", json=body, headers=headers).status_code == 403
    headers = {"X-CSRF-Token": client.get("/api/auth/me").json()["csrf_token"]}
    assert client.post("/api/v1/findings/triage", json=body, headers=headers).json() == {"changed": 1}


def test_incidents_and_services(client: TestClient, platform: Platform) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from tianmu.store.schema import services

    viewer, analyst = bearer(platform, "victor"), bearer(platform, "anna")
    incidents = client.get("/api/v1/incidents", headers=viewer).json()
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["assets"] and "203.0.113.45" in json_text(incident)
    assert len(incident["timeline"]) == 2
    one = client.get(f"/api/v1/incidents/{incident['id']}", headers=viewer).json()
    assert one["id"] == incident["id"]
    assert (
        client.patch(
            f"/api/v1/incidents/{incident['id']}", headers=viewer, json={"status": "resolved"}
        ).status_code
        == 403
    )
    changed = client.patch(
        f"/api/v1/incidents/{incident['id']}",
        headers=analyst,
        json={"status": "acknowledged", "assignee": "anna"},
    ).json()
    assert (changed["status"], changed["assignee"]) == ("acknowledged", "anna")
    assert client.get("/api/v1/incidents/INC-ffffffffffff", headers=viewer).status_code == 404

    shop = next(a for a in client.get("/api/v1/assets", headers=viewer).json() if a["name"] == "/srv/shop")
    now = datetime.now(UTC)
    with platform.app.state.store.begin() as conn:
        conn.execute(
            insert(services).values(
                tenant="acme",
                asset_id=shop["id"],
                address="10.0.0.5",
                port=22,
                transport="tcp",
                state="open",
                service="ssh",
                product="OpenSSH",
                version="9.2p1",
                info={},
                first_seen=now,
                last_seen=now,
            )
        )
    listed = client.get("/api/v1/services", headers=viewer, params={"asset_id": shop["id"]}).json()
    assert [(s["port"], s["product"]) for s in listed] == [(22, "OpenSSH")]
    assert "OpenSSH" in client.get(f"/assets/{shop['id']}", headers=viewer).text


def json_text(value: object) -> str:
    import json

    return json.dumps(value)
