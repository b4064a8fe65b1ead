"""Password hashing schemes, policy parsing and combination, and the one permission check."""

from __future__ import annotations

import pytest

from tianmu.identity import Permission, PermissionDenied, Policy, Principal, Role, authorize, can
from tianmu.identity.passwords import check_strength, hash_password, needs_rehash, verify_password
from tianmu.identity.permissions import role_may_grant


def test_argon2id_is_the_default() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterY")


def test_sm3_pbkdf2_scheme() -> None:
    stored = hash_password("correct horse battery", "sm3-pbkdf2", iterations=1000)
    assert stored.startswith("$sm3-pbkdf2$i=1000$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "wrong")
    assert not verify_password("$sm3-pbkdf2$garbage", "x")
    # switching schemes asks for a re-hash on the next sign-in, both ways
    assert needs_rehash(stored, "sm3-pbkdf2")  # fewer iterations than the current setting
    assert needs_rehash(stored, "argon2id")
    assert needs_rehash(hash_password("x" * 12), "sm3-pbkdf2")
    assert not needs_rehash(hash_password("x" * 12), "argon2id")


def test_password_strength() -> None:
    assert check_strength("short", 12) is not None
    assert check_strength("aaaaaaaaaaaaaaaa", 12) is not None
    assert check_strength("correct horse battery", 12) is None


def test_policy_json_round_trip_and_validation() -> None:
    policy = Policy(required_factors=(("password", "passkey"), ("certificate",)), max_failures=3)
    assert Policy.from_json(policy.to_json()) == policy
    with pytest.raises(ValueError, match="unknown policy keys"):
        Policy.from_json({"max_failure": 3})
    with pytest.raises(ValueError, match="required_factors"):
        Policy.from_json({"required_factors": [["password", "retina"]]})
    with pytest.raises(ValueError, match="required_factors"):
        Policy.from_json({"required_factors": []})
    with pytest.raises(ValueError, match="non-negative"):
        Policy.from_json({"session_minutes": -1})


def test_policy_alternatives() -> None:
    policy = Policy(required_factors=(("password", "passkey"), ("password", "totp"), ("certificate",)))
    assert not policy.satisfied_by({"password"})
    assert policy.satisfied_by({"password", "totp"})
    assert policy.satisfied_by({"certificate"})
    assert not policy.satisfied_by({"passkey"})
    assert set(policy.next_factors({"password"})) == {"passkey", "totp"}


def _p(role: Role, tenant: str = "acme", scopes: frozenset[str] | None = None) -> Principal:
    return Principal(user_id="u", tenant=tenant, username="u", role=role, via="session", scopes=scopes)


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        (Role.VIEWER, Permission.FINDINGS_READ, True),
        (Role.VIEWER, Permission.FINDINGS_TRIAGE, False),
        (Role.ANALYST, Permission.FINDINGS_TRIAGE, True),
        (Role.ANALYST, Permission.USERS_MANAGE, False),
        (Role.ADMIN, Permission.USERS_MANAGE, True),
        (Role.ADMIN, Permission.TENANT_MANAGE, False),
        (Role.OWNER, Permission.TENANT_MANAGE, True),
    ],
)
def test_role_permissions(role: Role, permission: Permission, allowed: bool) -> None:
    assert can(_p(role), permission) is allowed
    if allowed:
        authorize(_p(role), permission)
    else:
        with pytest.raises(PermissionDenied):
            authorize(_p(role), permission)


def test_other_tenant_and_token_scopes_are_refused() -> None:
    with pytest.raises(PermissionDenied, match="tenant"):
        authorize(_p(Role.OWNER), Permission.FINDINGS_READ, "other")
    scoped = _p(Role.ADMIN, scopes=frozenset({"findings:read"}))
    authorize(scoped, Permission.FINDINGS_READ)
    with pytest.raises(PermissionDenied, match="scoped"):
        authorize(scoped, Permission.USERS_MANAGE)


def test_role_granting() -> None:
    assert role_may_grant(Role.ADMIN, Role.ANALYST)
    assert not role_may_grant(Role.ADMIN, Role.OWNER)
    assert not role_may_grant(Role.ANALYST, Role.ADMIN)
    assert role_may_grant(Role.OWNER, Role.OWNER)
