"""Errors of the commercial-cryptography package.

TianmuError
└── CryptoError              a key, signature or ciphertext is unusable
    ├── IntegrityError       authenticated decryption failed: wrong key, tampered data or AAD
    ├── KeyFormatError       a key or certificate could not be read (names the file when known)
    └── BackendError         the native library is missing or refused an operation
"""

from __future__ import annotations

from tianmu.core.errors import TianmuError

__all__ = ["BackendError", "CryptoError", "IntegrityError", "KeyFormatError"]


class CryptoError(TianmuError):
    """A cryptographic operation could not be carried out."""


class IntegrityError(CryptoError):
    """Sealed data failed authentication: the key is wrong, or the data or its AAD was altered."""


class KeyFormatError(CryptoError):
    """A key, signature or certificate is not in a format we can read."""


class BackendError(CryptoError):
    """OpenSSL's libcrypto is missing, lacks an algorithm, or failed an operation."""
