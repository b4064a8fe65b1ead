"""The sign-in flows on both databases: what runs on SQLite in the other tests, once on PostgreSQL too."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest
from identity_helpers import SoftAuthenticator, make_service

from tianmu import gmcrypto
from tianmu.core.clock import ManualClock
from tianmu.identity import AccountLocked, AuthenticationError, Policy, Role, cli_principal
from tianmu.identity.certlogin import sign_challenge
from tianmu.store.database import Store

PASSWORD = "correct horse battery"


def test_factors_sessions_tokens_and_lockout(
    store: Store, tmp_path: Path, clock: ManualClock, authenticator: SoftAuthenticator
) -> None:
    svc = make_service(store, tmp_path / "home", clock)
    svc.create_tenant("acme")
    admin = cli_principal("acme")
    svc.create_user(admin, "acme", "alice", Role.ADMIN, password=PASSWORD)
    svc.set_policy(
        admin,
        "acme",
        Policy(required_factors=(("password", "totp"), ("passkey",), ("certificate",)), max_failures=2),
    )
    seed, _ = svc.enable_totp(admin, "acme", "alice")
    step = svc.password_login("acme", "alice", PASSWORD)
    assert step.pending and step.remaining == ("totp",)
    done = svc.totp_login(step.pending, pyotp.TOTP(seed).at(clock.now()))
    assert done.done and done.session_secret
    principal = svc.session_principal(done.session_secret)

    handle, options = svc.passkey_register_options(principal)
    svc.passkey_register_verify(principal, handle, authenticator.create(options))
    handle, options = svc.passkey_login_options("acme")
    assert svc.passkey_login_verify("acme", handle, authenticator.get(options)).done
    with pytest.raises(AuthenticationError):
        svc.passkey_login_verify("acme", handle, authenticator.get(options))

    svc.init_tenant_ca(admin, "acme")
    key = gmcrypto.generate_key()
    cert = svc.issue_user_certificate(admin, "acme", "alice", key.public_key)
    handle, challenge, _ = svc.cert_login_challenge("acme")
    signature = sign_challenge(key, "acme", svc.rp.origin, challenge)
    assert svc.cert_login_verify("acme", handle, cert.to_pem(), signature).done

    token, _record = svc.create_token(principal, "ci", ["findings:read"], days=1)
    assert svc.token_principal(token).scopes == frozenset({"findings:read"})

    with pytest.raises(AuthenticationError):
        svc.password_login("acme", "alice", "wrong")
    with pytest.raises(AccountLocked):
        svc.password_login("acme", "alice", "wrong")
    report = svc.audit.verify(svc.platform_key().public_key)
    assert report.ok and report.entries > 15
