"""Guessing user names against the lockout: a locked, a disabled and an unknown account are answered
alike (same words, same one password hash), and guesses at a locked account still count towards the
client's rate limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tianmu.identity import AuthenticationError, IdentityService, Policy, Principal, RateLimited, Role
from tianmu.identity import signin as signin_module

PASSWORD = "correct horse battery"


def _policy(svc: IdentityService, admin: Principal, **values: object) -> None:
    svc.set_policy(admin, "acme", Policy.from_json({**Policy().to_json(), **values}))


def _answer(svc: IdentityService, username: str, password: str = "guess", client: str = "local") -> str:
    with pytest.raises(AuthenticationError) as refused:
        svc.password_login("acme", username, password, client=client)
    assert not isinstance(refused.value, RateLimited)
    return str(refused.value)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The password hashes checked, in order (the work that makes an answer slow or fast)."""
    checked: list[str] = []
    real: Callable[..., Any] = signin_module.passwords.verify_password

    def counting(hashed: str, password: str) -> bool:
        checked.append(hashed)
        return bool(real(hashed, password))

    monkeypatch.setattr(signin_module.passwords, "verify_password", counting)
    return checked


def test_locked_disabled_and_unknown_accounts_answer_alike(
    svc: IdentityService, admin: Principal, hashes: list[str]
) -> None:
    _policy(svc, admin, max_failures=2, lockout_minutes=30, rate_limit_attempts=0)
    for name in ("alice", "dora"):
        svc.create_user(admin, "acme", name, Role.ANALYST, password=PASSWORD)
    svc.set_disabled(admin, "acme", "dora", True)
    unknown = _answer(svc, "nobody")
    assert _answer(svc, "alice") == unknown  # first failure
    assert _answer(svc, "alice") == unknown  # the failure that locks
    assert svc.get_user("acme", "alice").locked_until is not None
    hashes.clear()
    locked = _answer(svc, "alice", PASSWORD)  # even the right password, while locked
    assert len(hashes) == 1  # the locked answer costs one hash, as every other answer does
    assert locked == unknown == _answer(svc, "dora", PASSWORD) == _answer(svc, "nobody")
    assert len(hashes) == 3
    assert "locked" not in unknown.split("(")[0]  # the words name no account's state
    reasons = [e.details.get("reason") for e in svc.audit.entries(limit=3)]
    assert reasons == ["unknown user or no password", "disabled", "locked"]  # the audit knows why


def test_attempts_on_a_locked_account_count_towards_the_clients_limit(
    svc: IdentityService, admin: Principal
) -> None:
    _policy(
        svc, admin, max_failures=1, lockout_minutes=30, rate_limit_attempts=4, rate_limit_window_seconds=60
    )
    svc.create_user(admin, "acme", "alice", Role.ANALYST, password=PASSWORD)
    _answer(svc, "alice", client="203.0.113.9")  # locks it
    for _ in range(3):  # hammering the locked account
        _answer(svc, "alice", PASSWORD, client="203.0.113.9")
    with pytest.raises(RateLimited):
        svc.password_login("acme", "alice", PASSWORD, client="203.0.113.9")
    # and each refusal was kept in the audit chain, not rolled back with the refused request
    assert [e.details.get("reason") for e in svc.audit.entries(limit=3)] == ["locked"] * 3


def test_second_factor_refusals_on_a_locked_account_are_recorded(
    svc: IdentityService, admin: Principal
) -> None:
    _policy(svc, admin, required_factors=[["password", "totp"]], rate_limit_attempts=0)
    svc.create_user(admin, "acme", "alice", Role.ANALYST, password=PASSWORD)
    step = svc.password_login("acme", "alice", PASSWORD)
    assert not step.done and step.pending
    svc.set_disabled(admin, "acme", "alice", True)
    with pytest.raises(AuthenticationError, match="disabled"):  # the user is known here: say why
        svc.totp_login(step.pending, "000000")
    entry = svc.audit.entries(limit=1)[0]
    assert (entry.action, entry.outcome, entry.details["reason"]) == ("login.totp", "failure", "disabled")
