"""The platform's SM2 signing key (audit checkpoints), kept in the data directory sealed under the KEK."""

from __future__ import annotations

import os
from pathlib import Path

from tianmu import gmcrypto
from tianmu.core.errors import ConfigError
from tianmu.gmcrypto import sm2

__all__ = ["PLATFORM_KEY_FILE", "platform_key"]

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
