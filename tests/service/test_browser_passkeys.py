"""Passkeys in a real browser: Playwright drives Debian's Chromium with a CDP virtual authenticator — the
stand-in for a fingerprint reader or face recognition — against the app served by uvicorn on
http://localhost (an IP address cannot be a WebAuthn relying-party id)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import PASSWORD, seeded_app
from sqlalchemy import select

from testsupport import free_port, serve_app
from tianmu.store.schema import identity_audit, identity_passkeys

CHROMIUM = "/usr/bin/chromium"

playwright_api = pytest.importorskip("playwright.sync_api")


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("TIANMU_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TIANMU_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    port = free_port()
    origin = f"http://localhost:{port}"
    app = seeded_app(tmp_path / "home", origin)
    with serve_app(app, port, lifespan="off"):
        yield origin, app


@pytest.fixture
def page() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _skip_or_fail(f"{CHROMIUM} is not installed (make test installs the Debian chromium package)")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context()
        yield context.new_page()
        browser.close()


def _authenticator(page: Any, *, user_verified: bool) -> tuple[Any, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": user_verified,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def _password_sign_in(page: Any, origin: str) -> None:
    page.goto(f"{origin}/auth/sign-in")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("#password-submit")
    page.wait_for_url(f"{origin}/auth/account")


def _enrol_passkey(page: Any, origin: str) -> None:
    page.goto(f"{origin}/auth/passkeys")
    page.fill("#passkey-name", "virtual fingerprint")
    page.click("#passkey-add")
    page.wait_for_selector("#message.ok, #message.error")  # selectors, not eval: the page's CSP forbids eval


def _audit_actions(app: Any, action: str) -> list[tuple[str, str]]:
    with app.state.store.connect() as conn:
        rows = conn.execute(
            select(identity_audit.c.outcome, identity_audit.c.details).where(
                identity_audit.c.action == action
            )
        )
        return [(r.outcome, r.details) for r in rows]


def test_register_a_passkey_and_sign_in_with_user_verification(served: tuple[str, Any], page: Any) -> None:
    origin, app = served
    _authenticator(page, user_verified=True)
    _password_sign_in(page, origin)
    _enrol_passkey(page, origin)
    assert page.text_content("#message") == "Passkey added."
    with app.state.store.connect() as conn:
        assert conn.execute(select(identity_passkeys.c.name)).scalars().all() == ["virtual fingerprint"]
    page.goto(f"{origin}/auth/account")
    page.click("#sign-out")
    page.wait_for_url(f"{origin}/auth/sign-in")
    page.click("#passkey-signin")
    page.wait_for_url(f"{origin}/auth/account")
    text = page.text_content("#signed-in") or ""
    assert "alice" in text and "passkey" in text
    logins = _audit_actions(app, "login.passkey")
    assert logins and logins[-1][0] == "success" and '"user_verified":true' in logins[-1][1]


def test_passkey_without_user_verification_is_refused(served: tuple[str, Any], page: Any) -> None:
    origin, app = served
    cdp, verified_id = _authenticator(page, user_verified=True)
    _password_sign_in(page, origin)
    _enrol_passkey(page, origin)
    assert page.text_content("#message") == "Passkey added."
    credential = cdp.send("WebAuthn.getCredentials", {"authenticatorId": verified_id})["credentials"][0]
    # The same passkey moves to an authenticator whose user verification fails (no finger, wrong face).
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": verified_id})
    unverified = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": False,
                "automaticPresenceSimulation": True,
            }
        },
    )["authenticatorId"]
    cdp.send("WebAuthn.addCredential", {"authenticatorId": unverified, "credential": credential})
    page.goto(f"{origin}/auth/account")
    page.click("#sign-out")
    page.wait_for_url(f"{origin}/auth/sign-in")
    page.click("#passkey-signin")
    page.wait_for_selector("#message.error")
    message = page.text_content("#message") or ""
    assert "Passkey sign-in failed" in message
    assert page.url.startswith(f"{origin}/auth/sign-in")
    assert page.goto(f"{origin}/api/auth/me").status == 401
    # Chromium itself refuses (NotAllowedError) when the page demands user verification the authenticator
    # cannot give, so nothing reaches the server; had it sent an assertion without the UV flag, the server
    # would refuse it (tests/identity/test_login.py covers that path with a software authenticator).
    assert [o for o, _ in _audit_actions(app, "login.passkey")] in ([], ["failure"])


def test_enrolment_without_user_verification_adds_nothing(served: tuple[str, Any], page: Any) -> None:
    origin, app = served
    _authenticator(page, user_verified=False)
    _password_sign_in(page, origin)
    _enrol_passkey(page, origin)
    assert "not added" in (page.text_content("#message") or "")
    with app.state.store.connect() as conn:
        assert conn.execute(select(identity_passkeys.c.id)).first() is None


def test_password_then_totp_and_certificate_pages(served: tuple[str, Any], page: Any) -> None:
    import base64

    import pyotp

    from tianmu import gmcrypto
    from tianmu.identity import Policy, cli_principal

    origin, app = served
    identity = app.state.identity
    admin = cli_principal("acme")
    identity.set_policy(admin, "acme", Policy(required_factors=(("password", "totp"), ("certificate",))))
    seed, _ = identity.enable_totp(admin, "acme", "alice")
    page.goto(f"{origin}/auth/sign-in")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("#password-submit")
    page.wait_for_selector("#step-totp:not([hidden])")
    page.fill("#totp-code", pyotp.TOTP(seed).now())
    page.click("#step-totp button[type=submit]")
    page.wait_for_url(f"{origin}/auth/account")
    assert "password + totp" in (page.text_content("#signed-in") or "")
    page.click("#sign-out")
    page.wait_for_url(f"{origin}/auth/sign-in")

    identity.init_tenant_ca(admin, "acme")
    key = gmcrypto.generate_key()
    cert = identity.issue_user_certificate(admin, "acme", "alice", key.public_key)
    page.click("#certificate-link")
    page.wait_for_url(f"{origin}/auth/certificate?tenant=acme")
    page.click("#cert-challenge")
    page.wait_for_selector("#message.ok")
    message = page.input_value("#cert-message").encode("utf-8")
    page.fill("#cert-pem", cert.to_pem().decode("ascii"))
    page.fill("#cert-signature", base64.b64encode(gmcrypto.sign(key, message)).decode("ascii"))
    page.click("#certificate-form button[type=submit]")
    page.wait_for_url(f"{origin}/auth/account")
    assert "certificate" in (page.text_content("#signed-in") or "")
