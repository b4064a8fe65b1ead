"""The keys of identity: the key-encryption key that seals secrets at rest (TOTP seeds, the tenant CA keys)
and the platform's SM2 signing key (audit checkpoints), kept in the data directory sealed under the KEK."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from tianmu import gmcrypto
from tianmu.core.errors import ConfigError
from tianmu.gmcrypto import sm2

__all__ = ["PLATFORM_KEY_FILE", "Keyring", "platform_key"]

PLATFORM_KEY_FILE = "platform-sm2.key.sealed"
_AAD = b"tianmu:platform-sm2-key"


def platform_key(home: Path, kek: bytes) -> sm2.Sm2PrivateKey:
    """Load the platform key, creating it (0600, sealed with SM4-GCM) on first use."""
    path = home / PLATFORM_KEY_FILE
    sealing_key = gmcrypto.derive_key(kek, "platform-key")
    if path.exists():
        try:
            der = gmcrypto.open(sealing_key, path.read_bytes(), aad=_AAD)
        except gmcrypto.IntegrityError as exc:
            raise ConfigError(
                f"{path}: cannot unseal the platform key (a different TIANMU_MASTER_KEY or master.key?)"
            ) from exc
        return sm2.load_private_key(der, source=str(path))
    key = sm2.generate_key()
    home.mkdir(parents=True, exist_ok=True)
    sealed = gmcrypto.seal(sealing_key, key.to_der(), aad=_AAD)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return platform_key(home, kek)
    with os.fdopen(fd, "wb") as handle:
        handle.write(sealed)
    return key


class Keyring:
    """Seals and opens secrets under keys derived from the KEK (one per purpose, bound to an AAD naming
    the owner, so a sealed value cannot be moved to another user or tenant), and holds the platform key
    once it has been loaded (it is read only when a checkpoint is signed)."""

    def __init__(self, home: Path, kek: bytes | None = None) -> None:
        self.home = home
        self.kek = kek if kek is not None else gmcrypto.master_key(home)
        self._platform_key: sm2.Sm2PrivateKey | None = None

    def platform_key(self) -> sm2.Sm2PrivateKey:
        if self._platform_key is None:
            self._platform_key = platform_key(self.home, self.kek)
        return self._platform_key

    def seal(self, purpose: str, plaintext: bytes, aad: str) -> str:
        key = gmcrypto.derive_key(self.kek, purpose)
        return base64.b64encode(gmcrypto.seal(key, plaintext, aad=aad.encode("utf-8"))).decode("ascii")

    def unseal(self, purpose: str, sealed: str, aad: str) -> bytes:
        key = gmcrypto.derive_key(self.kek, purpose)
        return gmcrypto.open(key, base64.b64decode(sealed), aad=aad.encode("utf-8"))
