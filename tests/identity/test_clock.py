"""Identity keeps time by the clock it is given: lockouts, tokens, sessions, one-time steps and TOTP
windows end exactly when that clock says, checked with a `ManualClock` and no sleeping."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest
from identity_helpers import DAY, login_principal

from tianmu.core.clock import ManualClock
from tianmu.identity import (
    AccountLocked,
    AuthenticationError,
    IdentityService,
    Policy,
    Principal,
    RateLimited,
    Role,
)

PASSWORD = "correct horse battery"


def set_policy(svc: IdentityService, admin: Principal, **values: object) -> None:
    svc.set_policy(admin, "acme", Policy.from_json({**Policy().to_json(), **values}))


def test_service_uses_the_clock_it_was_given(svc: IdentityService, clock: ManualClock) -> None:
    assert svc.clock is clock
    assert svc.get_tenant("acme").created_at == clock.now()
    assert clock.slept == []  # nothing in identity waits by sleeping


def test_lockout_ends_exactly_when_its_minutes_are_up(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    set_policy(svc, admin, max_failures=2, lockout_minutes=15)
    with pytest.raises(AuthenticationError):
        svc.password_login("acme", "alice", "guess one")
    with pytest.raises(AccountLocked) as locked:
        svc.password_login("acme", "alice", "guess two")
    assert locked.value.until == clock.now() + dt.timedelta(minutes=15)
    assert svc.get_user("acme", "alice").locked_until == locked.value.until
    clock.advance(15 * 60 - 1)
    with pytest.raises(AccountLocked):
        svc.password_login("acme", "alice", PASSWORD)
    clock.advance(1)
    assert svc.password_login("acme", "alice", PASSWORD).done
    assert svc.get_user("acme", "alice").failed_count == 0


def test_token_expires_at_its_last_second(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    svc.set_role(admin, "acme", "alice", Role.ADMIN)
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    token, record = svc.create_token(principal, "nightly", days=2)
    assert record.created_at == clock.now() and record.expires_at == clock.now() + dt.timedelta(days=2)
    clock.advance(2 * DAY - 1)
    assert svc.token_principal(token).username == "alice"
    assert svc.list_tokens(principal)[0].last_used_at == clock.now()
    clock.advance(1)
    with pytest.raises(AuthenticationError, match="expired") as info:
        svc.token_principal(token)
    assert info.value.reason == "expired token"


def test_rate_limit_window_slides_with_the_clock(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    set_policy(svc, admin, rate_limit_attempts=2, rate_limit_window_seconds=60, max_failures=0)
    svc.password_login("acme", "alice", PASSWORD, client="203.0.113.1")
    clock.advance(20)
    svc.password_login("acme", "alice", PASSWORD, client="203.0.113.1")
    clock.advance(10)
    with pytest.raises(RateLimited) as limited:
        svc.password_login("acme", "alice", PASSWORD, client="203.0.113.1")
    assert limited.value.retry_after == 30  # the first attempt leaves the window in 30 s
    clock.advance(31)
    assert svc.password_login("acme", "alice", PASSWORD, client="203.0.113.1").done


def test_one_time_steps_expire_by_the_clock(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    handle, _options = svc.passkey_login_options("acme")
    clock.advance(5 * 60)  # a passkey challenge lives five minutes
    with pytest.raises(AuthenticationError) as info:
        svc.passkey_login_verify("acme", handle, {"id": "AAAA", "rawId": "AAAA"})
    assert "expired" in str(info.value)
    set_policy(svc, admin, required_factors=[["password", "totp"]])
    seed, _ = svc.enable_totp(admin, "acme", "alice")
    step = svc.password_login("acme", "alice", PASSWORD)
    assert step.pending
    clock.advance(10 * 60)  # an unfinished sign-in lives ten minutes
    with pytest.raises(AuthenticationError, match="expired"):
        svc.totp_login(step.pending, pyotp.TOTP(seed).at(clock.now()))


def test_totp_codes_are_taken_from_the_clock_within_one_step(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    set_policy(svc, admin, required_factors=[["password", "totp"]])
    seed, _ = svc.enable_totp(admin, "acme", "alice")
    app = pyotp.TOTP(seed)
    code_now = app.at(clock.now())
    clock.advance(30)  # one step of drift is tolerated...
    step = svc.password_login("acme", "alice", PASSWORD)
    assert step.pending and svc.totp_login(step.pending, code_now).done
    stale = app.at(clock.now())
    clock.advance(60)  # ...two are not
    step = svc.password_login("acme", "alice", PASSWORD)
    assert step.pending
    with pytest.raises(AuthenticationError, match="wrong code"):
        svc.totp_login(step.pending, stale)
