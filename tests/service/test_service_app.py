"""The application factory, settings, auth API, CSRF, cookies and the permission dependency."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from service_helpers import PASSWORD, csrf, service_settings

from tianmu.core.errors import ConfigError
from tianmu.identity import Permission, Policy, Principal, cli_principal
from tianmu.service import ServiceSettings, create_app
from tianmu.service.api.deps import require
from tianmu.service.settings import DEVELOPMENT_SECRET


def test_settings_refuse_default_secrets_outside_development(tmp_path: Path) -> None:
    env = {
        "TIANMU_HOME": str(tmp_path),
        "TIANMU_ENV": "production",
        "TIANMU_ORIGIN": "https://tianmu.example.org",
    }
    with pytest.raises(ConfigError, match="development default"):
        ServiceSettings.from_env(env)
    with pytest.raises(ConfigError, match="32 characters"):
        ServiceSettings.from_env({**env, "TIANMU_SECRET_KEY": "short"})
    with pytest.raises(ConfigError, match="https"):
        ServiceSettings.from_env(
            {**env, "TIANMU_SECRET_KEY": "x" * 40, "TIANMU_ORIGIN": "http://tianmu.example.org"}
        )
    good = ServiceSettings.from_env({**env, "TIANMU_SECRET_KEY": "x" * 40})
    assert good.relying_party_id == "tianmu.example.org" and good.cookie_secure
    with pytest.raises(ConfigError, match="RP_ID"):
        ServiceSettings.from_env({**env, "TIANMU_SECRET_KEY": "x" * 40, "TIANMU_RP_ID": "evil.org"})
    dev = ServiceSettings.from_env({"TIANMU_HOME": str(tmp_path)})
    assert dev.secret_key == DEVELOPMENT_SECRET and not dev.cookie_secure
    with pytest.raises(ConfigError):
        create_app(ServiceSettings(core=dev.core, environment="production", origin="https://a.example.org"))


def test_password_sign_in_sets_a_session_cookie(client: TestClient) -> None:
    headers = csrf(client)
    result = client.post(
        "/api/auth/login/password", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    assert result.status_code == 200, result.text
    assert result.json()["done"] is True
    headers = {"X-CSRF-Token": result.json()["csrf_token"]}  # the new session's token comes with it
    cookie = result.headers["set-cookie"]
    assert "tianmu_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    me = client.get("/api/auth/me").json()
    assert (me["username"], me["tenant"], me["role"]) == ("alice", "acme", "admin")
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/auth/me").status_code == 401


def test_csrf_is_required_for_cookie_clients(client: TestClient) -> None:
    body = {"username": "alice", "password": PASSWORD}
    assert client.post("/api/auth/login/password", json=body).status_code == 403
    client.get("/api/auth/csrf")
    assert (
        client.post("/api/auth/login/password", json=body, headers={"X-CSRF-Token": "forged"}).status_code
        == 403
    )
    assert client.post("/api/auth/login/password", json=body, headers=csrf(client)).status_code == 200


def test_wrong_password_is_401_and_rate_limit_is_429(app: FastAPI, client: TestClient) -> None:
    identity = app.state.identity
    policy = Policy.from_json({**Policy().to_json(), "rate_limit_attempts": 2, "max_failures": 0})
    identity.set_policy(cli_principal("acme"), "acme", policy)
    headers = csrf(client)
    body = {"username": "alice", "password": "wrong"}
    for _ in range(2):
        answer = client.post("/api/auth/login/password", json=body, headers=headers)
        assert answer.status_code == 401 and answer.json()["detail"].startswith("wrong user name or password")
    limited = client.post("/api/auth/login/password", json=body, headers=headers)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def test_second_factor_uses_a_pending_cookie(app: FastAPI, client: TestClient) -> None:
    identity = app.state.identity
    identity.set_policy(cli_principal("acme"), "acme", Policy(required_factors=(("password", "totp"),)))
    seed, _ = identity.enable_totp(cli_principal("acme"), "acme", "alice")
    headers = csrf(client)
    first = client.post(
        "/api/auth/login/password", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    assert first.json() == {
        "done": False,
        "factors": ["password"],
        "remaining": ["totp"],
        "redirect": None,
        "csrf_token": None,
    }
    assert client.get("/api/auth/me").status_code == 401
    import pyotp

    second = client.post("/api/auth/login/totp", json={"code": pyotp.TOTP(seed).now()}, headers=headers)
    assert second.json()["done"] is True
    assert client.get("/api/auth/me").json()["factors"] == ["password", "totp"]


def test_tokens_through_the_api_and_require(app: FastAPI, client: TestClient) -> None:
    from fastapi import APIRouter

    probe = APIRouter()

    @probe.get("/api/probe")
    def probe_route(principal: Principal = Depends(require(Permission.USERS_MANAGE))) -> dict[str, str]:
        return {"user": principal.username}

    app.include_router(probe)
    headers = csrf(client)
    client.post("/api/auth/login/password", json={"username": "alice", "password": PASSWORD}, headers=headers)
    headers = csrf(client)  # CSRF tokens are bound to the session: a fresh one after sign-in
    made = client.post(
        "/api/auth/tokens", json={"name": "ci", "scopes": ["findings:read"], "days": 3}, headers=headers
    )
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    client.post("/api/auth/logout", headers=headers)
    bare = TestClient(app, base_url="http://localhost:8000")
    assert bare.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).json()["via"] == "token"
    # the token's scopes stop it where alice herself would pass
    assert bare.get("/api/probe", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert bare.get("/api/probe", headers={"Authorization": "Bearer tmu_nope_nope"}).status_code == 401
    assert bare.get("/api/probe").status_code == 401


def test_viewer_is_forbidden_admin_routes(client: TestClient) -> None:
    headers = csrf(client)
    client.post(
        "/api/auth/login/password", json={"username": "victor", "password": PASSWORD}, headers=headers
    )
    headers = csrf(client)  # CSRF tokens are bound to the session: a fresh one after sign-in
    assert client.get("/api/auth/audit").status_code == 403
    assert client.post("/api/auth/tokens", json={"name": "x"}, headers=headers).status_code == 403


def test_pages_render_and_redirect(client: TestClient) -> None:
    page = client.get("/auth/sign-in")
    assert page.status_code == 200 and 'name="csrf-token"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/auth/certificate").status_code == 200
    away = client.get("/auth/account", follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"] == "/auth/sign-in"
    client.post(
        "/api/auth/login/password", json={"username": "alice", "password": PASSWORD}, headers=csrf(client)
    )
    assert "Signed in as" in client.get("/auth/account").text
    assert client.get("/auth/sign-in", follow_redirects=False).status_code == 303


def test_sign_out_form_needs_csrf(client: TestClient) -> None:
    headers = csrf(client)
    client.post("/api/auth/login/password", json={"username": "alice", "password": PASSWORD}, headers=headers)
    headers = csrf(client)  # CSRF tokens are bound to the session: a fresh one after sign-in
    assert client.post("/auth/sign-out", data={"csrf_token": "nope"}).status_code == 403
    out = client.post("/auth/sign-out", data={"csrf_token": headers["X-CSRF-Token"]}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/auth/me").status_code == 401


def test_secure_cookies_on_https(tmp_path: Path) -> None:
    settings = ServiceSettings(
        core=service_settings(tmp_path).core,
        environment="production",
        secret_key="s" * 40,
        origin="https://tianmu.example.org",
    )
    app = create_app(settings)
    app.state.identity.create_tenant("acme")
    with TestClient(app, base_url="https://tianmu.example.org") as client:
        answer = client.get("/api/auth/csrf")
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("__Host-tianmu_csrf=") and "Secure" in cookie
        assert answer.headers["strict-transport-security"].startswith("max-age=")
        assert client.get("/api/docs").status_code == 404


def test_self_service_totp_enrolment_and_password_change(client: TestClient) -> None:
    import pyotp

    headers = csrf(client)
    client.post(
        "/api/auth/login/password", json={"username": "victor", "password": PASSWORD}, headers=headers
    )
    headers = csrf(client)  # CSRF tokens are bound to the session: a fresh one after sign-in
    started = client.post("/api/auth/totp/start", headers=headers).json()
    assert started["uri"].startswith("otpauth://totp/") and started["seed"] in started["uri"]
    wrong = client.post(
        "/api/auth/totp/confirm", json={"handle": started["handle"], "code": "000000"}, headers=headers
    )
    assert wrong.status_code == 401 or pyotp.TOTP(started["seed"]).now() == "000000"
    code = pyotp.TOTP(started["seed"]).now()
    assert (
        client.post(
            "/api/auth/totp/confirm", json={"handle": started["handle"], "code": code}, headers=headers
        ).status_code
        == 204
    )
    assert "An authenticator app is set up" in client.get("/auth/account").text
    bad = client.post(
        "/api/auth/password", json={"current": "nope", "new": "a far better passphrase"}, headers=headers
    )
    assert bad.status_code == 401
    good = client.post(
        "/api/auth/password", json={"current": PASSWORD, "new": "a far better passphrase"}, headers=headers
    )
    assert good.status_code == 204
    client.post("/api/auth/logout", headers=headers)
    headers = csrf(client)  # signed out: the session's token went with it
    again = client.post(
        "/api/auth/login/password",
        json={"username": "victor", "password": "a far better passphrase"},
        headers=headers,
    )
    assert again.json()["done"] is True


def test_user_and_policy_administration_api(client: TestClient) -> None:
    headers = csrf(client)
    client.post("/api/auth/login/password", json={"username": "alice", "password": PASSWORD}, headers=headers)
    headers = csrf(client)  # CSRF tokens are bound to the session: a fresh one after sign-in
    made = client.post("/api/auth/users", json={"username": "wendy", "role": "analyst"}, headers=headers)
    assert made.status_code == 201 and made.json()["has_password"] is False
    assert (
        client.post(
            "/api/auth/users", json={"username": "wendy", "role": "analyst"}, headers=headers
        ).status_code
        == 409
    )
    assert (
        client.post("/api/auth/users", json={"username": "oz", "role": "owner"}, headers=headers).status_code
        == 403
    )
    assert (
        client.post("/api/auth/users", json={"username": "oz", "role": "wizard"}, headers=headers).status_code
        == 422
    )
    patched = client.patch(
        "/api/auth/users/wendy", json={"role": "viewer", "disabled": True}, headers=headers
    )
    assert patched.json()["role"] == "viewer" and patched.json()["disabled"] is True
    assert [u["username"] for u in client.get("/api/auth/users").json()] == ["alice", "victor", "wendy"]
    policy = client.get("/api/auth/policy").json()
    policy["required_factors"] = [["password", "passkey"], ["certificate"]]
    assert client.put("/api/auth/policy", json=policy, headers=headers).json()["required_factors"] == [
        ["password", "passkey"],
        ["certificate"],
    ]
    assert (
        client.put("/api/auth/policy", json={"required_factors": [["iris"]]}, headers=headers).status_code
        == 422
    )
    actions = [e["action"] for e in client.get("/api/auth/audit").json()]
    assert actions[:4] == ["policy.set", "user.disable", "user.role", "user.create"]


def test_sign_in_leads_to_the_dashboard_when_there_is_one(tmp_path: Path) -> None:
    from fastapi import APIRouter

    home = APIRouter()

    @home.get("/")
    def root() -> dict[str, str]:
        return {"page": "dashboard"}

    app = create_app(service_settings(tmp_path / "a"), routers=[home])
    assert app.state.after_sign_in == "/"
    assert create_app(service_settings(tmp_path / "b")).state.after_sign_in == "/auth/account"


def test_pages_behind_require_send_people_to_sign_in(tmp_path: Path) -> None:
    from fastapi import APIRouter

    pages = APIRouter()

    @pages.get("/findings")
    def findings(principal: Principal = Depends(require(Permission.FINDINGS_READ))) -> dict[str, str]:
        return {"user": principal.username}

    app = create_app(service_settings(tmp_path), routers=[pages])
    with TestClient(app, base_url="http://localhost:8000") as browser:
        page = browser.get("/findings?status=open", headers={"Accept": "text/html"}, follow_redirects=False)
        assert (
            page.status_code == 303
            and page.headers["location"] == "/auth/sign-in?next=/findings%3Fstatus%3Dopen"
        )
        assert browser.get("/findings", headers={"Accept": "application/json"}).status_code == 401


def test_next_stays_on_this_site(client: TestClient) -> None:
    assert 'data-after="/findings?x=1"' in client.get("/auth/sign-in", params={"next": "/findings?x=1"}).text
    for hostile in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        assert 'data-after="/auth/account"' in client.get("/auth/sign-in", params={"next": hostile}).text
