"""Rows of the identity tables, looked up and turned into the nouns of `tianmu.identity.models`.

Plain functions over a connection, shared by every part of the identity service, so each part reads
tenants and users the same way and none has to ask another for them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select

from tianmu.gmcrypto.sm3 import digest
from tianmu.identity.errors import NotFound
from tianmu.identity.models import Policy, Role, Tenant, User
from tianmu.store.schema import identity_tenants, identity_users

__all__ = [
    "find_user",
    "stored_id",
    "tenant_from_row",
    "tenant_row",
    "user_by_id",
    "user_from_row",
    "user_row",
    "utc",
    "utc_opt",
]


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything in Tianmu is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def utc_opt(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else utc(value)


def stored_id(handle: str) -> str:
    """Handles and session secrets are stored hashed: reading the database does not let anyone continue
    someone's sign-in or take over their session."""
    return digest(handle.encode("utf-8")).hex()


def tenant_from_row(row: Any) -> Tenant:
    return Tenant(
        id=row.id,
        name=row.name,
        policy=Policy.from_json(row.policy or {}),
        created_at=utc(row.created_at),
        has_ca_key=bool(row.ca_key_sealed),
        ca_certs_pem=row.ca_certs or "",
    )


def user_from_row(row: Any) -> User:
    return User(
        id=row.id,
        tenant=row.tenant,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        created_at=utc(row.created_at),
        has_password=bool(row.password_hash),
        has_totp=bool(row.totp_sealed),
        disabled=bool(row.disabled),
        locked_until=utc_opt(row.locked_until),
        failed_count=row.failed_count,
    )


def tenant_row(conn: Connection, tenant: str) -> Any:
    row = conn.execute(select(identity_tenants).where(identity_tenants.c.id == tenant)).first()
    if row is None:
        raise NotFound(f"no tenant {tenant!r}")
    return row


def find_user(conn: Connection, tenant: str, username: str) -> Any | None:
    """The user's row, or None (sign-in must not say which user names exist)."""
    return conn.execute(
        select(identity_users).where(identity_users.c.tenant == tenant, identity_users.c.username == username)
    ).first()


def user_row(conn: Connection, tenant: str, username: str) -> Any:
    row = find_user(conn, tenant, username)
    if row is None:
        raise NotFound(f"no user {username!r} in tenant {tenant!r}")
    return row


def user_by_id(conn: Connection, user_id: str) -> Any:
    row = conn.execute(select(identity_users).where(identity_users.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"no user with id {user_id}")
    return row
