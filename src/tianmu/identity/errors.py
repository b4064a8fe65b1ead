"""Errors of the identity package.

    TianmuError
    └── IdentityError               an identity operation was refused or its input is wrong
        ├── AuthenticationError     a factor did not verify (wrong password/code, bad assertion...)
        │   ├── AccountLocked       too many failures: the account is locked until a time
        │   └── RateLimited         too many attempts from one client in the policy's window
        ├── PermissionDenied        the principal may not do this (role, scope or tenant)
        ├── NotFound                no such tenant, user, token or credential
        └── Conflict                it already exists (user name, tenant id)

Messages of AuthenticationError are safe to show to the person signing in: they never say whether the
user name or the password was wrong.
"""

from __future__ import annotations

import datetime as dt

from tianmu.core.errors import TianmuError

__all__ = [
    "AccountLocked",
    "AuthenticationError",
    "Conflict",
    "IdentityError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
]


class IdentityError(TianmuError):
    pass


class AuthenticationError(IdentityError):
    """A factor failed. `reason` is for the audit log; str(self) is what the user sees."""

    def __init__(self, message: str = "sign-in failed", *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class AccountLocked(AuthenticationError):
    """`message` replaces the text that names the lock where saying so would reveal that the account
    exists (the password step, which anyone can try with any user name); `until` is kept for callers."""

    def __init__(self, until: dt.datetime, message: str | None = None) -> None:
        super().__init__(
            message or f"account locked until {until:%Y-%m-%d %H:%M} UTC after repeated failures",
            reason="locked",
        )
        self.until = until


class RateLimited(AuthenticationError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts; try again in {retry_after} s", reason="rate-limited")
        self.retry_after = retry_after


class PermissionDenied(IdentityError):
    pass


class NotFound(IdentityError):
    pass


class Conflict(IdentityError):
    pass
