"""SM4 (GB/T 32907-2016) block cipher in GCM, CBC and CTR modes, through `cryptography`'s OpenSSL.

`seal`/`open` are the one authenticated format the rest of Tianmu stores: ``nonce(12) ‖ ciphertext ‖
tag(16)`` under a 16-byte key with SM4-GCM. The streaming helpers keep the same layout for files of any size.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tianmu.gmcrypto.errors import CryptoError, IntegrityError

__all__ = [
    "BLOCK_SIZE",
    "KEY_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "cbc_decrypt",
    "cbc_encrypt",
    "ctr_crypt",
    "ecb_encrypt_block",
    "gcm_decrypt",
    "gcm_encrypt",
    "open",
    "open_stream",
    "seal",
    "seal_stream",
]

KEY_SIZE = 16
BLOCK_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
_CHUNK = 1 << 20


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise CryptoError(f"SM4 needs a 16-byte key, got {len(key) if hasattr(key, '__len__') else key!r}")


def ecb_encrypt_block(key: bytes, block: bytes) -> bytes:
    """Raw SM4 of one 16-byte block (the standard's single-block example; not a mode for data)."""
    _check_key(key)
    if len(block) != BLOCK_SIZE:
        raise CryptoError("SM4 block must be 16 bytes")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> tuple[bytes, bytes]:
    """SM4-GCM with an explicit nonce; returns (ciphertext, 16-byte tag)."""
    _check_key(key)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    return ct, enc.tag


def gcm_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes, aad: bytes = b"") -> bytes:
    _check_key(key)
    if len(tag) != TAG_SIZE:
        raise IntegrityError("SM4-GCM tag must be 16 bytes")
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    try:
        return dec.update(ciphertext) + dec.finalize()
    except InvalidTag as exc:
        raise IntegrityError("SM4-GCM authentication failed: wrong key, or the data was altered") from exc


def seal(key: bytes, plaintext: bytes, *, aad: bytes = b"") -> bytes:
    """Encrypt and authenticate: ``nonce(12) ‖ ciphertext ‖ tag(16)``, a fresh random nonce each call."""
    nonce = os.urandom(NONCE_SIZE)
    ct, tag = gcm_encrypt(key, nonce, plaintext, aad)
    return nonce + ct + tag


def open(key: bytes, sealed: bytes, *, aad: bytes = b"") -> bytes:
    """Check and decrypt what `seal` produced; raises IntegrityError on any tampering."""
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise IntegrityError(f"sealed data is {len(sealed)} bytes, shorter than nonce and tag")
    nonce, body, tag = sealed[:NONCE_SIZE], sealed[NONCE_SIZE:-TAG_SIZE], sealed[-TAG_SIZE:]
    return gcm_decrypt(key, nonce, body, tag, aad)


def seal_stream(key: bytes, src: BinaryIO, dst: BinaryIO, *, aad: bytes = b"") -> int:
    """`seal` for a stream, in bounded memory; same byte layout. Returns the bytes written."""
    _check_key(key)
    nonce = os.urandom(NONCE_SIZE)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    written = dst.write(nonce)
    while chunk := src.read(_CHUNK):
        written += dst.write(enc.update(chunk))
    written += dst.write(enc.finalize())
    written += dst.write(enc.tag)
    return written


def open_stream(key: bytes, src: BinaryIO, dst: BinaryIO, size: int, *, aad: bytes = b"") -> int:
    """`open` for a stream of `size` bytes. Plaintext is written before the tag is checked, so callers
    write to a temporary file and keep it only when this returns (it raises IntegrityError otherwise)."""
    _check_key(key)
    if size < NONCE_SIZE + TAG_SIZE:
        raise IntegrityError(f"sealed data is {size} bytes, shorter than nonce and tag")
    nonce = src.read(NONCE_SIZE)
    remaining = size - NONCE_SIZE - TAG_SIZE
    # GCM needs the tag up front for decryption in `cryptography`; finalize_with_tag takes it at the end.
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce)).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    written = 0
    while remaining > 0:
        chunk = src.read(min(_CHUNK, remaining))
        if not chunk:
            raise IntegrityError("sealed stream ended early")
        remaining -= len(chunk)
        written += dst.write(dec.update(chunk))
    tag = src.read(TAG_SIZE)
    try:
        dec.finalize_with_tag(tag)
    except (InvalidTag, ValueError) as exc:
        raise IntegrityError("SM4-GCM authentication failed: wrong key, or the data was altered") from exc
    return written


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes, *, pad: bool = True) -> bytes:
    """SM4-CBC; PKCS#7 padding unless `pad` is False (then the length must be a multiple of 16)."""
    _check_key(key)
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    elif len(plaintext) % BLOCK_SIZE:
        raise CryptoError("SM4-CBC without padding needs a multiple of 16 bytes")
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    return enc.update(plaintext) + enc.finalize()


def cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes, *, pad: bool = True) -> bytes:
    _check_key(key)
    if len(ciphertext) % BLOCK_SIZE:
        raise CryptoError("SM4-CBC ciphertext must be a multiple of 16 bytes")
    dec = Cipher(algorithms.SM4(key), modes.CBC(iv)).decryptor()
    data = dec.update(ciphertext) + dec.finalize()
    if not pad:
        return data
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError as exc:
        raise IntegrityError("SM4-CBC padding is invalid: wrong key or corrupted data") from exc


def ctr_crypt(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    """SM4-CTR (encryption and decryption are the same operation). Not authenticated: prefer `seal`."""
    _check_key(key)
    enc = Cipher(algorithms.SM4(key), modes.CTR(counter_block)).encryptor()
    return enc.update(data) + enc.finalize()
