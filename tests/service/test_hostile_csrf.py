"""CSRF against a planted or borrowed token: tokens are bound to their session (signed double-submit),
and a state-changing request that says it comes from another site or origin is refused anyway."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

ORIGIN = "http://localhost:8000"


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(tmp_path / "home")


@pytest.fixture
def client(platform: Platform) -> TestClient:
    return TestClient(platform.app, base_url=ORIGIN)


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    return dict(part.split("=", 1) for part in headers["Cookie"].split("; "))


def _triage(client: TestClient, headers: dict[str, str], finding: int = 1) -> int:
    body = {"ids": [finding], "status": "acknowledged"}
    return client.post("/api/v1/findings/triage", headers=headers, json=body).status_code


def test_a_token_of_another_session_is_refused(client: TestClient, platform: Platform) -> None:
    victim, attacker = _cookies(platform.headers["anna"]), _cookies(platform.headers["alice"])
    # The attacker plants their own CSRF cookie in the victim's browser and sends their own token.
    planted = {
        "Cookie": f"tianmu_session={victim['tianmu_session']}; tianmu_csrf={attacker['tianmu_csrf']}",
        "X-CSRF-Token": platform.headers["alice"]["X-CSRF-Token"],
    }
    response = client.post(
        "/api/v1/findings/triage", headers=planted, json={"ids": [1], "status": "resolved"}
    )
    assert response.status_code == 403 and "another session" in response.json()["detail"]
    assert _triage(client, platform.headers["anna"]) == 200  # the victim's own pair works


def test_a_token_from_before_sign_in_is_refused(client: TestClient, platform: Platform) -> None:
    anonymous = client.get("/api/auth/csrf")
    session = _cookies(platform.headers["anna"])["tianmu_session"]
    headers = {
        "Cookie": f"tianmu_session={session}; tianmu_csrf={anonymous.cookies['tianmu_csrf']}",
        "X-CSRF-Token": anonymous.json()["csrf_token"],
    }
    client.cookies.clear()
    assert _triage(client, headers) == 403


@pytest.mark.parametrize(
    "token", ["", "forged", "WyJ4Il0.AAAA", "null", "IlRoaXMgaXMgbm90IGEgbGlzdCI.c2lnbmF0dXJl"]
)
def test_garbage_tokens_are_403_not_500(client: TestClient, platform: Platform, token: str) -> None:
    headers = {**platform.headers["anna"], "X-CSRF-Token": token}
    assert _triage(client, headers) == 403
    cookie_as_token = {
        **platform.headers["anna"],
        "X-CSRF-Token": _cookies(platform.headers["anna"])["tianmu_csrf"],
    }
    assert _triage(client, cookie_as_token) == 403  # the cookie is not its own token any more


@pytest.mark.parametrize(
    ("header", "value", "allowed"),
    [
        ("Origin", "https://evil.example", False),
        ("Origin", "null", False),
        ("Origin", "http://localhost:8000.evil.example", False),
        ("Origin", ORIGIN, True),
        ("Sec-Fetch-Site", "cross-site", False),
        ("Sec-Fetch-Site", "same-site", False),  # a sibling sub-domain is another site for us
        ("Sec-Fetch-Site", "same-origin", True),
        ("Sec-Fetch-Site", "none", True),
    ],
)
def test_origin_is_a_second_line(
    client: TestClient, platform: Platform, header: str, value: str, allowed: bool
) -> None:
    headers = {**platform.headers["anna"], header: value}
    assert (_triage(client, headers) == 200) is allowed
    finding = 1
    form = {"ids": str(finding), "status": "open", "csrf_token": headers["X-CSRF-Token"]}
    page = client.post("/findings/triage", headers=headers, data=form, follow_redirects=False)
    assert (page.status_code == 303) is allowed  # the dashboard's forms too
    login = client.post(
        "/api/auth/login/password",
        headers={header: value, "X-CSRF-Token": client.get("/api/auth/csrf").json()["csrf_token"]},
        json={"username": "anna", "password": "correct horse battery"},
    )
    client.cookies.clear()
    assert (login.status_code == 200) is allowed  # and signing in (login CSRF)


def test_bearer_clients_need_neither(client: TestClient, platform: Platform) -> None:
    headers = {**bearer(platform, "alice-token"), "Origin": "https://automation.example"}
    assert _triage(client, headers) == 200
