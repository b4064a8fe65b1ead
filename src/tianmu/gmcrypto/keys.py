"""The key-encryption key (KEK) that seals Tianmu's secrets at rest.

Taken from ``TIANMU_MASTER_KEY`` (hex or base64 of 16 bytes) when set, else from ``master.key`` in the data
directory, created with mode 0600 on first use. Sub-keys for separate purposes are derived with HMAC-SM3 so
that one purpose's ciphertext can never be opened as another's.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from tianmu.core.errors import ConfigError
from tianmu.gmcrypto.sm3 import hmac_sm3
from tianmu.gmcrypto.sm4 import KEY_SIZE

__all__ = ["MASTER_KEY_ENV", "MASTER_KEY_FILE", "derive_key", "master_key", "parse_key_text"]

MASTER_KEY_ENV = "TIANMU_MASTER_KEY"
MASTER_KEY_FILE = "master.key"


def parse_key_text(text: str, *, source: str) -> bytes:
    """A 16-byte key written as 32 hex digits or base64; `source` names where it came from in errors."""
    text = text.strip()
    try:
        if len(text) == 2 * KEY_SIZE:
            return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_SIZE:
        raise ConfigError(
            f"{source}: expected 16 bytes as 32 hex digits or base64, got {len(text)} characters"
        )
    return raw


def master_key(home: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The 16-byte SM4 key-encryption key; creates `home/master.key` (0600) on first use."""
    env = os.environ if environ is None else environ
    if text := env.get(MASTER_KEY_ENV):
        return parse_key_text(text, source=MASTER_KEY_ENV)
    path = home / MASTER_KEY_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        key = os.urandom(KEY_SIZE)
        try:
            # O_EXCL: if two processes race, exactly one writes and the other reads its key below.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(key.hex() + "\n")
            return key
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: the master key file must not be readable by others (chmod 600 it)")
    return parse_key_text(path.read_text(encoding="ascii", errors="replace"), source=str(path))


def derive_key(kek: bytes, purpose: str) -> bytes:
    """A 16-byte key for one `purpose` (e.g. "totp", "quarantine"), derived from the KEK with HMAC-SM3."""
    return hmac_sm3(kek, b"tianmu-kdf:" + purpose.encode("utf-8"))[:KEY_SIZE]
