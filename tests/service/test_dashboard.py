"""The situation dashboard without a browser: pages render from the same numbers as the API, read without
JavaScript, triage through a CSRF-protected form, and speak English or Chinese."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(tmp_path / "home")


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(platform.app, base_url="http://localhost:8000") as test_client:
        yield test_client


def _value(html: str, testid: str) -> int:
    block = html.split(f'data-testid="{testid}"', 1)[1]
    match = re.search(r'data-value="(\d+)"', block)
    assert match, testid
    return int(match.group(1))


def test_a_person_without_a_session_is_sent_to_sign_in(client: TestClient) -> None:
    response = client.get("/findings?kind=malware", headers={"Accept": "text/html"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/sign-in?next=/findings%3Fkind%3Dmalware"


def test_overview_numbers_equal_the_api(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    api = client.get("/api/v1/overview", headers=viewer).json()
    page = client.get("/", headers=viewer)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert _value(html, "open-findings") == api["open_findings"] == 6
    assert _value(html, "kev") == api["kev_open"] == 1
    for severity, count in api["by_severity"].items():
        assert f'data-severity="{severity}" data-value="{count}"' in html
    assert "/srv/shop" in html and "SSH brute force" in html
    assert 'data-testid="risk"' in html and "No assessment yet." not in html
    # Readable without JavaScript: the numbers are in the HTML, scripts only add the chart.
    assert "<noscript>" in html or "trend appears" in html
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_every_section_renders(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    shop = next(a for a in client.get("/api/v1/assets", headers=viewer).json() if a["name"] == "/srv/shop")
    finding = client.get("/api/v1/findings", headers=viewer, params={"kev": "true"}).json()["items"][0]
    expectations = {
        "/assets": "/srv/gateway",
        f"/assets/{shop['id']}": "salt",
        "/findings": "PYSEC-2021-98",
        f"/findings/{finding['id']}": "9.9.9",
        "/detections": "203.0.113.45",
        "/incidents": "203.0.113.45",
        "/intel": "No intelligence hits.",
        "/kb": "No knowledge base imported yet.",
        "/jobs": "No jobs.",
    }
    incident = client.get("/api/v1/incidents", headers=viewer).json()[0]
    expectations[f"/incidents/{incident['id']}"] = "SSH brute force"
    for path, text in expectations.items():
        response = client.get(path, headers=viewer)
        assert response.status_code == 200, (path, response.text[:300])
        assert text in response.text, path
    assert client.get("/findings/999999", headers=viewer).status_code == 404


def test_findings_filters_and_pages(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    html = client.get("/findings", headers=viewer, params={"kind": "detection"}).text
    rows = html.split('data-testid="findings"', 1)[1]
    assert "ssh-bruteforce" in rows and "PYSEC" not in rows
    assert 'href="/api/v1/findings/export?format=csv&kind=detection"' in html
    assert "Set selected to" not in html  # a viewer gets no triage form


def test_triage_form_needs_csrf_and_changes_the_finding(client: TestClient, platform: Platform) -> None:
    analyst = bearer(platform, "anna")
    finding = client.get("/api/v1/findings", headers=analyst).json()["items"][0]
    page = client.get("/findings", headers=analyst).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    form = {"ids": str(finding["id"]), "status": "false_positive", "back": "/findings"}
    no_token = {k: v for k, v in analyst.items() if k != "X-CSRF-Token"}
    no_token["Cookie"] = no_token["Cookie"].split("; tianmu_csrf=")[0]
    refused = client.post("/findings/triage", headers=no_token, data={**form, "csrf_token": "forged"})
    assert refused.status_code == 403
    done = client.post(
        "/findings/triage",
        headers=analyst,
        data={**form, "csrf_token": analyst["X-CSRF-Token"]},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/findings?done=")
    assert (
        client.get(f"/api/v1/findings/{finding['id']}", headers=analyst).json()["status"] == "false_positive"
    )
    evil = client.post(
        "/findings/triage",
        headers=analyst,
        data={**form, "back": "//evil.example/", "csrf_token": analyst["X-CSRF-Token"]},
        follow_redirects=False,
    )
    assert evil.headers["location"].startswith("/findings?")  # never an open redirect


def test_chinese_ui(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    chinese = client.get("/", headers={**viewer, "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}).text
    assert "安全态势" in chinese and "未处理发现" in chinese and 'lang="zh-CN"' in chinese
    english = client.get("/", headers={**viewer, "Accept-Language": "en-GB"}).text
    assert "Security situation" in english and "安全态势" not in english
    switched = client.get("/findings", headers=viewer, params={"lang": "zh_CN"})
    assert "发现" in switched.text and "tianmu_lang=zh_CN" in switched.headers["set-cookie"]


def test_trace_page_and_api(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    story = client.get("/api/v1/trace/203.0.113.45", headers=viewer).json()
    assert story["counts"]["finding"] == 2 and story["counts"]["incident"] == 1
    times = [i["time"] for i in story["items"] if i["time"]]
    assert times == sorted(times)
    html = client.get("/trace", headers=viewer, params={"value": "203.0.113.45"}).text
    assert "SSH brute force" in html and "New local user" in html
    foreign = client.get("/api/v1/trace/198.51.100.9", headers=viewer).json()
    assert foreign["items"] == []  # globex's attacker is not acme's business
    assert "攻击溯源" in client.get("/trace", headers={**viewer, "Accept-Language": "zh-CN"}).text
