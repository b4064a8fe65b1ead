"""SM3 (GB/T 32905-2016) digests, HMAC-SM3 and an SM3-based PBKDF2, through `cryptography`'s OpenSSL."""

from __future__ import annotations

import hmac as _hmac
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

__all__ = [
    "DIGEST_SIZE",
    "Sm3",
    "digest",
    "digest_file",
    "digest_stream",
    "hmac_sm3",
    "hmac_verify",
    "pbkdf2_sm3",
]

DIGEST_SIZE = 32
_CHUNK = 1 << 20


class Sm3:
    """Incremental SM3, for data that arrives in pieces (hash chains, streamed files)."""

    __slots__ = ("_h",)

    def __init__(self, data: bytes = b"") -> None:
        self._h = hashes.Hash(hashes.SM3())
        if data:
            self._h.update(data)

    def update(self, data: bytes) -> Sm3:
        self._h.update(data)
        return self

    def copy(self) -> Sm3:
        clone = Sm3.__new__(Sm3)
        clone._h = self._h.copy()
        return clone

    def digest(self) -> bytes:
        return self._h.copy().finalize()

    def hexdigest(self) -> str:
        return self.digest().hex()


def digest(data: bytes) -> bytes:
    """SM3 digest (32 bytes) of `data`."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def digest_stream(stream: BinaryIO | Iterable[bytes]) -> bytes:
    """SM3 of a binary stream or an iterable of chunks, in bounded memory."""
    h = hashes.Hash(hashes.SM3())
    if hasattr(stream, "read"):
        while chunk := stream.read(_CHUNK):
            h.update(chunk)
    else:
        for chunk in stream:
            h.update(chunk)
    return h.finalize()


def digest_file(path: Path) -> bytes:
    """SM3 of a file's contents, read in 1 MiB chunks."""
    with path.open("rb") as handle:
        return digest_stream(handle)


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC-SM3 (RFC 2104 over SM3) of `data` under `key`."""
    mac = crypto_hmac.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


def hmac_verify(key: bytes, data: bytes, tag: bytes) -> bool:
    """Constant-time check of an HMAC-SM3 tag."""
    return _hmac.compare_digest(hmac_sm3(key, data), tag)


def pbkdf2_sm3(password: bytes, salt: bytes, iterations: int, length: int = 32) -> bytes:
    """PBKDF2 (RFC 8018) with HMAC-SM3 as the PRF: password hashing for sites bound to commercial crypto."""
    kdf = PBKDF2HMAC(algorithm=hashes.SM3(), length=length, salt=salt, iterations=iterations)
    return kdf.derive(password)
