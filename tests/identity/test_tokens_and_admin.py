"""API tokens (hashed, scoped, expiring) and the administrative rules around users and tenants."""

from __future__ import annotations

import pytest
from identity_helpers import DAY, login_principal
from sqlalchemy import select

from tianmu.core.clock import ManualClock
from tianmu.identity import (
    AuthenticationError,
    Conflict,
    IdentityError,
    IdentityService,
    Permission,
    PermissionDenied,
    Principal,
    Role,
    authorize,
)
from tianmu.store.schema import identity_tokens

PASSWORD = "correct horse battery"


def test_token_is_stored_hashed_and_scoped(svc: IdentityService, admin: Principal, alice: str) -> None:
    svc.set_role(admin, "acme", "alice", Role.ADMIN)
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    token, record = svc.create_token(principal, "ci", ["findings:read"], days=7)
    assert token.startswith("tmu_") and record.scopes == ("findings:read",)
    with svc.store.connect() as conn:
        stored = conn.execute(select(identity_tokens.c.digest)).scalar_one()
    assert token.split("_", 2)[2] not in stored
    acting = svc.token_principal(token)
    assert acting.via == "token" and acting.username == "alice"
    authorize(acting, Permission.FINDINGS_READ)
    with pytest.raises(PermissionDenied, match="scoped"):
        authorize(acting, Permission.USERS_MANAGE)
    with pytest.raises(PermissionDenied, match="cannot create tokens"):
        svc.create_token(acting, "nested")


def test_token_expiry_revocation_and_forgery(
    svc: IdentityService, admin: Principal, alice: str, clock: ManualClock
) -> None:
    svc.set_role(admin, "acme", "alice", Role.ADMIN)
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    token, record = svc.create_token(principal, "short", days=1)
    clock.advance(DAY + 1)
    with pytest.raises(AuthenticationError, match="expired"):
        svc.token_principal(token)
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    token, record = svc.create_token(principal, "revoked")
    svc.revoke_token(principal, record.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        svc.token_principal(token)
    with pytest.raises(AuthenticationError):
        svc.token_principal(token[:-2] + "xx")
    with pytest.raises(AuthenticationError):
        svc.token_principal("not-a-token")


def test_token_scopes_cannot_exceed_role(svc: IdentityService, admin: Principal, alice: str) -> None:
    principal = login_principal(svc, "acme", "alice", PASSWORD)  # analyst: no tokens:manage
    with pytest.raises(PermissionDenied):
        svc.create_token(principal, "x")
    svc.set_role(admin, "acme", "alice", Role.ADMIN)
    principal = login_principal(svc, "acme", "alice", PASSWORD)
    with pytest.raises(PermissionDenied, match="tenant:manage"):
        svc.create_token(principal, "x", ["tenant:manage"])
    with pytest.raises(IdentityError, match="at most"):
        svc.create_token(principal, "x", days=10_000)


def test_user_administration_rules(svc: IdentityService, admin: Principal, alice: str) -> None:
    with pytest.raises(Conflict):
        svc.create_user(admin, "acme", "alice", Role.VIEWER)
    with pytest.raises(IdentityError, match="at least 12"):
        svc.create_user(admin, "acme", "carol", Role.VIEWER, password="short")
    with pytest.raises(IdentityError, match="user name"):
        svc.create_user(admin, "acme", "bad name!", Role.VIEWER)
    svc.set_role(admin, "acme", "alice", Role.ADMIN)
    acting = login_principal(svc, "acme", "alice", PASSWORD)
    svc.create_user(acting, "acme", "dave", Role.ANALYST)
    with pytest.raises(PermissionDenied):
        svc.create_user(acting, "acme", "eve", Role.OWNER)
    svc.create_tenant("other")
    with pytest.raises(PermissionDenied, match="tenant"):
        svc.create_user(acting, "other", "frank", Role.VIEWER)
    assert [u.username for u in svc.list_users(acting, "acme")] == ["alice", "dave"]


def test_users_change_their_own_password_only(svc: IdentityService, admin: Principal, alice: str) -> None:
    svc.create_user(admin, "acme", "bob", Role.VIEWER, password=PASSWORD)
    other_device = svc.password_login("acme", "bob", PASSWORD).session_secret
    this_device = svc.password_login("acme", "bob", PASSWORD).session_secret
    assert other_device and this_device
    bob = svc.session_principal(this_device)
    svc.set_password(bob, "acme", "bob", "a much better passphrase")
    assert svc.session_principal(this_device).username == "bob"  # the session that changed it goes on
    with pytest.raises(AuthenticationError):
        svc.session_principal(other_device)  # every other one ended with the old password
    assert svc.password_login("acme", "bob", "a much better passphrase").done
    with pytest.raises(PermissionDenied):
        svc.set_password(bob, "acme", "alice", "a much better passphrase")


def test_tenant_ids_are_checked(svc: IdentityService) -> None:
    with pytest.raises(IdentityError, match="tenant id"):
        svc.create_tenant("Bad Tenant")
    with pytest.raises(Conflict):
        svc.create_tenant("acme")
