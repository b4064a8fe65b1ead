"""Password hashing: Argon2id by default (argon2-cffi), PBKDF2-HMAC-SM3 where commercial cryptography is
required. Both produce self-describing strings, so a tenant can switch schemes and old hashes still verify
(and are re-hashed on the next successful sign-in)."""

from __future__ import annotations

import base64
import functools
import hmac
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tianmu.gmcrypto.sm3 import pbkdf2_sm3

__all__ = [
    "SM3_PBKDF2_ITERATIONS",
    "check_strength",
    "dummy_hash",
    "hash_password",
    "needs_rehash",
    "verify_password",
]

SM3_PBKDF2_ITERATIONS = 200_000
"""Chosen so one hash costs about as much CPU as the Argon2id default on this hardware class."""
_SM3_PREFIX = "$sm3-pbkdf2$"
_ARGON2 = PasswordHasher()  # RFC 9106 low-memory profile: Argon2id, t=3, m=64 MiB, p=4


@functools.cache
def dummy_hash() -> str:
    """A hash to check against for unknown users, so "no such user" costs as long as a wrong password."""
    return _ARGON2.hash("tianmu-dummy-password")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, scheme: str = "argon2id", *, iterations: int = SM3_PBKDF2_ITERATIONS) -> str:
    if scheme == "argon2id":
        return _ARGON2.hash(password)
    if scheme == "sm3-pbkdf2":
        salt = os.urandom(16)
        derived = pbkdf2_sm3(password.encode("utf-8"), salt, iterations)
        return f"{_SM3_PREFIX}i={iterations}${_b64(salt)}${_b64(derived)}"
    raise ValueError(f"unknown password scheme {scheme!r}")


def verify_password(stored: str, password: str) -> bool:
    if stored.startswith(_SM3_PREFIX):
        try:
            params, salt_text, hash_text = stored[len(_SM3_PREFIX) :].split("$")
            iterations = int(params.removeprefix("i="))
            salt, expected = _unb64(salt_text), _unb64(hash_text)
        except ValueError:
            return False
        derived = pbkdf2_sm3(password.encode("utf-8"), salt, iterations, len(expected))
        return hmac.compare_digest(derived, expected)
    try:
        return _ARGON2.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str, scheme: str) -> bool:
    if scheme == "sm3-pbkdf2":
        return not stored.startswith(f"{_SM3_PREFIX}i={SM3_PBKDF2_ITERATIONS}$")
    if stored.startswith(_SM3_PREFIX):
        return True
    try:
        return _ARGON2.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def check_strength(password: str, min_length: int) -> str | None:
    """Why `password` is refused, or None. Length is what matters (NIST SP 800-63B), not character classes."""
    if len(password) < min_length:
        return f"the password must have at least {min_length} characters"
    if len(set(password)) < 4:
        return "the password repeats too few characters"
    return None
