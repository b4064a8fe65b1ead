"""Sign-in: every factor, the policies that combine them, and the failures (wrong code, replayed assertion,
sign count, missing UV, expired/foreign-CA/revoked certificate, locked account, rate limit)."""

from __future__ import annotations

import base64

import pyotp
import pytest
from identity_helpers import DAY, SoftAuthenticator, login_principal
from sqlalchemy import select

from tianmu import gmcrypto
from tianmu.core.clock import ManualClock
from tianmu.gmcrypto import x509 as gx
from tianmu.identity import (
    AccountLocked,
    AuthenticationError,
    IdentityService,
    PermissionDenied,
    Policy,
    Principal,
    RateLimited,
    Role,
)
from tianmu.identity.certlogin import sign_challenge
from tianmu.identity.enrolment import open_totp_seed
from tianmu.store.schema import identity_users

PASSWORD = "correct horse battery"


def set_policy(svc: IdentityService, admin: Principal, **values: object) -> None:
    svc.set_policy(admin, "acme", Policy.from_json({**Policy().to_json(), **values}))


# --- passwords, lockout, rate limits ------------------------------------------------------------------


def test_password_sign_in_creates_a_session(svc: IdentityService, alice: str) -> None:
    step = svc.password_login("acme", "alice", PASSWORD)
    assert step.done and step.factors == ("password",) and step.session_secret
    principal = svc.session_principal(step.session_secret)
    assert (principal.username, principal.role, principal.via) == ("alice", Role.ANALYST, "session")
    svc.end_session(step.session_secret)
    with pytest.raises(AuthenticationError):
        svc.session_principal(step.session_secret)


def test_wrong_password_and_unknown_user_look_the_same(svc: IdentityService, alice: str) -> None:
    with pytest.raises(AuthenticationError) as wrong:
        svc.password_login("acme", "alice", "not the password")
    with pytest.raises(AuthenticationError) as unknown:
        svc.password_login("acme", "nobody", "not the password")
    assert str(wrong.value) == str(unknown.value)
    assert str(wrong.value).startswith("wrong user name or password")
    assert svc.get_user("acme", "alice").failed_count == 1


def test_lockout_after_repeated_failures(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    set_policy(svc, admin, max_failures=3, lockout_minutes=10)
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            svc.password_login("acme", "alice", "guess")
    with pytest.raises(AccountLocked):
        svc.password_login("acme", "alice", "guess")
    # the right password does not help while locked
    with pytest.raises(AccountLocked):
        svc.password_login("acme", "alice", PASSWORD)
    clock.advance(11 * 60)
    assert svc.password_login("acme", "alice", PASSWORD).done
    assert svc.get_user("acme", "alice").failed_count == 0


def test_admin_unlocks(svc: IdentityService, admin: Principal, alice: str) -> None:
    set_policy(svc, admin, max_failures=1)
    with pytest.raises(AccountLocked):
        svc.password_login("acme", "alice", "guess")
    svc.unlock(admin, "acme", "alice")
    assert svc.password_login("acme", "alice", PASSWORD).done


def test_rate_limit_per_client(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    set_policy(svc, admin, rate_limit_attempts=3, rate_limit_window_seconds=60, max_failures=0)
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            svc.password_login("acme", "alice", "guess", client="203.0.113.9")
    with pytest.raises(RateLimited) as info:
        svc.password_login("acme", "alice", PASSWORD, client="203.0.113.9")
    assert 0 < info.value.retry_after <= 60
    assert svc.password_login("acme", "alice", PASSWORD, client="203.0.113.10").done  # another client
    clock.advance(61)
    assert svc.password_login("acme", "alice", PASSWORD, client="203.0.113.9").done


def test_disabled_user_cannot_sign_in(svc: IdentityService, admin: Principal, alice: str) -> None:
    svc.set_disabled(admin, "acme", "alice", True)
    with pytest.raises(AuthenticationError) as refused:
        svc.password_login("acme", "alice", PASSWORD)
    # refused for being disabled (the audit says so), told as any failure is (tests/hostile)
    assert refused.value.reason == "disabled"
    assert svc.audit.entries(limit=1)[0].details["reason"] == "disabled"


def test_sm3_pbkdf2_policy_rehashes_on_sign_in(svc: IdentityService, admin: Principal, alice: str) -> None:
    set_policy(svc, admin, password_scheme="sm3-pbkdf2")
    assert svc.password_login("acme", "alice", PASSWORD).done
    with svc.store.connect() as conn:
        stored = conn.execute(select(identity_users.c.password_hash)).scalar_one()
    assert stored.startswith("$sm3-pbkdf2$")
    assert svc.password_login("acme", "alice", PASSWORD).done


def test_sessions_end_when_idle_or_old(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    set_policy(svc, admin, idle_minutes=30, session_minutes=120)
    secret = svc.password_login("acme", "alice", PASSWORD).session_secret
    assert secret
    clock.advance(29 * 60)
    svc.session_principal(secret)
    clock.advance(31 * 60)
    with pytest.raises(AuthenticationError, match="ended"):
        svc.session_principal(secret)
    secret = svc.password_login("acme", "alice", PASSWORD).session_secret
    assert secret
    for _ in range(4):  # in use every 25 minutes: never idle...
        clock.advance(25 * 60)
        svc.session_principal(secret)
    clock.advance(25 * 60)  # ...but 125 minutes old
    with pytest.raises(AuthenticationError, match="ended"):
        svc.session_principal(secret)


# --- TOTP ---------------------------------------------------------------------------------------------


def test_password_then_totp(svc: IdentityService, admin: Principal, alice: str, clock: ManualClock) -> None:
    set_policy(svc, admin, required_factors=[["password", "totp"]])
    seed, uri = svc.enable_totp(admin, "acme", "alice")
    assert uri.startswith("otpauth://totp/") and "secret=" in uri
    step = svc.password_login("acme", "alice", PASSWORD)
    assert not step.done and step.remaining == ("totp",) and step.pending
    with pytest.raises(AuthenticationError, match="wrong code"):
        svc.totp_login(step.pending, "000000" if pyotp.TOTP(seed).at(clock.now()) != "000000" else "111111")
    code = pyotp.TOTP(seed).at(clock.now())
    done = svc.totp_login(step.pending, code)
    assert done.done and done.factors == ("password", "totp")
    # the same code again (a new sign-in inside the same 30 s) is refused: seen once, spent
    step2 = svc.password_login("acme", "alice", PASSWORD)
    assert step2.pending
    with pytest.raises(AuthenticationError):
        svc.totp_login(step2.pending, code)
    clock.advance(30)
    assert svc.totp_login(step2.pending, pyotp.TOTP(seed).at(clock.now())).done


def test_totp_seed_is_sealed_at_rest(svc: IdentityService, admin: Principal, alice: str) -> None:
    seed, _ = svc.enable_totp(admin, "acme", "alice")
    with svc.store.connect() as conn:
        sealed = conn.execute(select(identity_users.c.totp_sealed)).scalar_one()
    assert seed not in sealed and seed.encode() not in base64.b64decode(sealed)
    other = IdentityService(svc.store, home=svc.home, kek=b"x" * 16, rp=svc.rp, clock=svc.clock)
    row = type("Row", (), {"totp_sealed": sealed, "id": svc.get_user("acme", "alice").id})
    with pytest.raises(gmcrypto.IntegrityError):
        open_totp_seed(other.keyring, row)


def test_pending_sign_in_is_single_use(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    set_policy(svc, admin, required_factors=[["password", "totp"]])
    seed, _ = svc.enable_totp(admin, "acme", "alice")
    step = svc.password_login("acme", "alice", PASSWORD)
    assert step.pending
    assert svc.totp_login(step.pending, pyotp.TOTP(seed).at(clock.now())).done
    clock.advance(30)
    with pytest.raises(AuthenticationError, match="expired or was already used"):
        svc.totp_login(step.pending, pyotp.TOTP(seed).at(clock.now()))


# --- passkeys -----------------------------------------------------------------------------------------


def enrol(svc: IdentityService, authenticator: SoftAuthenticator) -> Principal:
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    handle, options = svc.passkey_register_options(principal)
    svc.passkey_register_verify(principal, handle, authenticator.create(options), "laptop")
    return principal


def test_passkey_registration_and_usernameless_sign_in(svc: IdentityService, alice: str,
                                                       authenticator: SoftAuthenticator) -> None:  # fmt: skip
    principal = enrol(svc, authenticator)
    assert [k["name"] for k in svc.list_passkeys(principal)] == ["laptop"]
    handle, options = svc.passkey_login_options("acme")
    step = svc.passkey_login_verify("acme", handle, authenticator.get(options))
    assert step.done and step.factors == ("passkey",)
    assert svc.list_passkeys(principal)[0]["sign_count"] == authenticator.counter


def test_replayed_assertion_is_refused(
    svc: IdentityService, alice: str, authenticator: SoftAuthenticator
) -> None:
    enrol(svc, authenticator)
    handle, options = svc.passkey_login_options("acme")
    assertion = authenticator.get(options)
    assert svc.passkey_login_verify("acme", handle, assertion).done
    with pytest.raises(AuthenticationError):
        svc.passkey_login_verify("acme", handle, assertion)
    # even against a fresh challenge the old assertion fails (its challenge is not this one)
    handle2, _ = svc.passkey_login_options("acme")
    with pytest.raises(AuthenticationError):
        svc.passkey_login_verify("acme", handle2, assertion)


def test_assertion_naming_another_user_is_refused(
    svc: IdentityService, admin: Principal, alice: str, authenticator: SoftAuthenticator
) -> None:
    enrol(svc, authenticator)
    other = svc.create_user(admin, "acme", "bob", Role.VIEWER)
    handle, options = svc.passkey_login_options("acme")
    assertion = authenticator.get(options)
    assertion["response"]["userHandle"] = base64.urlsafe_b64encode(other.id.encode()).decode().rstrip("=")
    with pytest.raises(AuthenticationError, match="another account"):
        svc.passkey_login_verify("acme", handle, assertion)


def test_sign_count_going_backwards_is_refused(svc: IdentityService, alice: str,
                                               authenticator: SoftAuthenticator) -> None:  # fmt: skip
    enrol(svc, authenticator)
    for _ in range(3):
        handle, options = svc.passkey_login_options("acme")
        assert svc.passkey_login_verify("acme", handle, authenticator.get(options)).done
    authenticator.counter = 1  # a cloned authenticator replaying an older counter
    handle, options = svc.passkey_login_options("acme")
    with pytest.raises(AuthenticationError) as info:
        svc.passkey_login_verify("acme", handle, authenticator.get(options))
    assert "sign count" in info.value.reason.lower()


def test_passkey_without_user_verification_is_refused(svc: IdentityService, alice: str,
                                                      authenticator: SoftAuthenticator) -> None:  # fmt: skip
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    handle, options = svc.passkey_register_options(principal)
    authenticator.user_verified = False
    with pytest.raises(AuthenticationError) as info:
        svc.passkey_register_verify(principal, handle, authenticator.create(options))
    assert "verif" in info.value.reason.lower()
    # registered with UV, then used without it
    authenticator.credentials.clear()
    authenticator.user_verified = True
    enrol(svc, authenticator)
    authenticator.user_verified = False
    handle, options = svc.passkey_login_options("acme")
    with pytest.raises(AuthenticationError) as info:
        svc.passkey_login_verify("acme", handle, authenticator.get(options))
    assert "verif" in info.value.reason.lower()


def test_password_plus_passkey_policy(svc: IdentityService, admin: Principal, alice: str,
                                      authenticator: SoftAuthenticator) -> None:  # fmt: skip
    enrol(svc, authenticator)
    set_policy(svc, admin, required_factors=[["password", "passkey"]])
    step = svc.password_login("acme", "alice", PASSWORD)
    assert not step.done and step.remaining == ("passkey",) and step.pending
    handle, options = svc.passkey_login_options("acme", pending=step.pending)
    done = svc.passkey_login_verify("acme", handle, authenticator.get(options), pending=step.pending)
    assert done.done and done.factors == ("passkey", "password")
    # a passkey alone does not satisfy this policy
    handle, options = svc.passkey_login_options("acme")
    assert not svc.passkey_login_verify("acme", handle, authenticator.get(options)).done


# --- SM2 certificates ---------------------------------------------------------------------------------


def cert_for(svc: IdentityService, admin: Principal, username: str, days: int = 30):  # type: ignore[no-untyped-def]
    key = gmcrypto.generate_key()
    cert = svc.issue_user_certificate(admin, "acme", username, key.public_key, days=days)
    return key, cert


def cert_login(svc: IdentityService, key, chain: bytes, **kwargs):  # type: ignore[no-untyped-def]
    handle, challenge, _message = svc.cert_login_challenge("acme")
    signature = sign_challenge(key, "acme", svc.rp.origin, challenge)
    return svc.cert_login_verify("acme", handle, chain, signature, **kwargs)


def test_certificate_login(svc: IdentityService, admin: Principal, alice: str) -> None:
    svc.init_tenant_ca(admin, "acme")
    key, cert = cert_for(svc, admin, "alice")
    step = cert_login(svc, key, cert.to_pem())
    assert step.done and step.factors == ("certificate",)


def test_certificate_alone_policy(svc: IdentityService, admin: Principal, alice: str) -> None:
    svc.init_tenant_ca(admin, "acme")
    set_policy(svc, admin, required_factors=[["certificate"]])
    step = svc.password_login("acme", "alice", PASSWORD)
    assert not step.done and step.remaining == ("certificate",)
    key, cert = cert_for(svc, admin, "alice")
    assert cert_login(svc, key, cert.to_pem()).done


def test_expired_certificate_is_refused(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    svc.init_tenant_ca(admin, "acme")
    key, cert = cert_for(svc, admin, "alice", days=1)
    clock.advance(2 * DAY)
    with pytest.raises(AuthenticationError) as info:
        cert_login(svc, key, cert.to_pem())
    assert "expired" in info.value.reason


def test_foreign_ca_certificate_is_refused(svc: IdentityService, admin: Principal, alice: str) -> None:
    svc.init_tenant_ca(admin, "acme")
    other = gmcrypto.generate_key()
    foreign_ca = gx.issue_certificate(
        subject="Other CA", public_key=other.public_key, issuer_key=other, ca=True
    )
    key = gmcrypto.generate_key()
    cert = gx.issue_certificate(
        subject="alice", public_key=key.public_key, issuer_key=other, issuer=foreign_ca
    )
    with pytest.raises(AuthenticationError, match="not trusted"):
        cert_login(svc, key, cert.to_pem() + foreign_ca.to_pem())


def test_wrong_key_revoked_and_unknown_user(svc: IdentityService, admin: Principal, alice: str) -> None:
    svc.init_tenant_ca(admin, "acme")
    key, cert = cert_for(svc, admin, "alice")
    with pytest.raises(AuthenticationError, match="does not verify"):
        cert_login(svc, gmcrypto.generate_key(), cert.to_pem())
    svc.create_user(admin, "acme", "bob", Role.VIEWER)
    bob_key, bob_cert = cert_for(svc, admin, "bob")
    svc.delete_user(admin, "acme", "bob")
    with pytest.raises(AuthenticationError, match="no account"):
        cert_login(svc, bob_key, bob_cert.to_pem())
    svc.revoke_certificate(admin, "acme", format(cert.serial_number, "x"), "key lost")
    with pytest.raises(AuthenticationError, match="revoked"):
        cert_login(svc, key, cert.to_pem())


def test_certificate_challenge_is_bound_to_tenant_and_single_use(svc: IdentityService, admin: Principal,
                                                                 alice: str) -> None:  # fmt: skip
    svc.init_tenant_ca(admin, "acme")
    key, cert = cert_for(svc, admin, "alice")
    handle, challenge, message = svc.cert_login_challenge("acme")
    assert b"tenant=acme" in message and svc.rp.origin.encode() in message
    wrong_tenant = sign_challenge(key, "other", svc.rp.origin, challenge)
    with pytest.raises(AuthenticationError):
        svc.cert_login_verify("acme", handle, cert.to_pem(), wrong_tenant)
    handle, challenge, _ = svc.cert_login_challenge("acme")
    good = sign_challenge(key, "acme", svc.rp.origin, challenge)
    assert svc.cert_login_verify("acme", handle, cert.to_pem(), good).done
    with pytest.raises(AuthenticationError, match=r"already used|expired"):
        svc.cert_login_verify("acme", handle, cert.to_pem(), good)


def test_external_ca_can_be_trusted(svc: IdentityService, admin: Principal, alice: str) -> None:
    usb_ca_key = gmcrypto.generate_key()
    usb_ca = gx.issue_certificate(
        subject="USB Key CA",
        public_key=usb_ca_key.public_key,
        issuer_key=usb_ca_key,
        ca=True,
        not_before=svc.clock.now(),
    )
    svc.trust_ca(admin, "acme", usb_ca.to_pem())
    key = gmcrypto.generate_key()
    cert = gx.issue_certificate(
        subject="alice",
        public_key=key.public_key,
        issuer_key=usb_ca_key,
        issuer=usb_ca,
        not_before=svc.clock.now(),
    )
    assert cert_login(svc, key, cert.to_pem()).done


def test_lost_passkey_is_removed(
    svc: IdentityService, admin: Principal, alice: str, authenticator: SoftAuthenticator
) -> None:
    principal = enrol(svc, authenticator)
    [key] = svc.list_passkeys(principal)
    svc.create_user(admin, "acme", "vic", Role.VIEWER, password=PASSWORD)
    vic = login_principal(svc, "acme", "vic", PASSWORD)
    with pytest.raises(PermissionDenied):
        svc.remove_passkey(vic, key["id"])
    with pytest.raises(PermissionDenied):
        svc.list_passkeys(vic, principal.user_id)
    assert svc.list_passkeys(admin, principal.user_id)[0]["id"] == key["id"]
    svc.remove_passkey(principal, key["id"])
    assert svc.list_passkeys(principal) == []
    handle, options = svc.passkey_login_options("acme")
    with pytest.raises(AuthenticationError, match="not registered"):
        svc.passkey_login_verify("acme", handle, authenticator.get(options))
    assert "passkey.remove" in [e.action for e in svc.audit.entries(limit=5)]
