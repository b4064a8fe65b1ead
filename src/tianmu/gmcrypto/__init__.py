"""Commercial cryptography (SM2, SM3, SM4) behind one small API.

SM3 and SM4 run through `cryptography` (its bundled OpenSSL); SM2, which `cryptography` lacks, runs through
the system OpenSSL 3 `libcrypto` EVP interface (see `tianmu.gmcrypto.sm2`). The functions here are the ones
the rest of Tianmu calls; their signatures are stable.

    digest(data) -> 32-byte SM3
    seal(key, plaintext, aad=...) / open(key, sealed, aad=...)   SM4-GCM, nonce(12) ‖ ct ‖ tag(16)
    master_key(home)                                              the key-encryption key for secrets at rest
    sign / verify / encrypt / decrypt                             SM2 (default ID 1234567812345678)
"""

from __future__ import annotations

from tianmu.gmcrypto.errors import BackendError, CryptoError, IntegrityError, KeyFormatError
from tianmu.gmcrypto.keys import derive_key, master_key
from tianmu.gmcrypto.sm2 import (
    DEFAULT_ID,
    Sm2PrivateKey,
    Sm2PublicKey,
    decrypt,
    encrypt,
    generate_key,
    sign,
    verify,
)
from tianmu.gmcrypto.sm3 import digest, digest_file, digest_stream, hmac_sm3
from tianmu.gmcrypto.sm4 import open, open_stream, seal, seal_stream

__all__ = [
    "DEFAULT_ID",
    "BackendError",
    "CryptoError",
    "IntegrityError",
    "KeyFormatError",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "decrypt",
    "derive_key",
    "digest",
    "digest_file",
    "digest_stream",
    "encrypt",
    "generate_key",
    "hmac_sm3",
    "master_key",
    "open",
    "open_stream",
    "seal",
    "seal_stream",
    "sign",
    "verify",
]
