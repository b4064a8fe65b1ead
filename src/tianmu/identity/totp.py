"""TOTP (RFC 6238) through pyotp, with the seed sealed at rest and every time step accepted only once."""

from __future__ import annotations

import datetime as dt

import pyotp

__all__ = ["DIGITS", "PERIOD", "matching_step", "new_seed", "provisioning_uri"]

DIGITS = 6
PERIOD = 30
_WINDOW = 1
"""Steps of clock drift tolerated either side."""


def new_seed() -> str:
    """A fresh base32 seed (160 bits, RFC 4226's recommendation)."""
    return pyotp.random_base32(32)


def provisioning_uri(seed: str, username: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans."""
    return pyotp.TOTP(seed, digits=DIGITS, interval=PERIOD).provisioning_uri(
        name=username, issuer_name=issuer
    )


def matching_step(seed: str, code: str, now: dt.datetime, last_step: int) -> int | None:
    """The time step `code` belongs to (within ±1 step of `now`), or None. Steps at or before `last_step`
    are refused, so a code seen once — even by an onlooker — cannot be used again."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != DIGITS:
        return None
    totp = pyotp.TOTP(seed, digits=DIGITS, interval=PERIOD)
    current = int(now.timestamp()) // PERIOD
    for step in range(current - _WINDOW, current + _WINDOW + 1):
        if step <= last_step:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None
