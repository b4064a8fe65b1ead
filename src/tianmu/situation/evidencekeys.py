"""The evidence signing key: SM2 (Ed25519 where SM2 is unavailable), kept sealed in the data directory,
with its public key beside it for whoever verifies bundles.

`home/keys/evidence-<alg>.key.sealed` holds the private key sealed with SM4-GCM under a key derived from
the key-encryption key (as the platform key is, `tianmu.identity.keys`), bound to its file name by the
associated data; `home/keys/evidence-<alg>.pub.pem` is the public key to hand to investigators
(`tianmu evidence verify --key ….pub.pem`). A plain PKCS#8 key left by an older version is sealed and
removed on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tianmu import gmcrypto
from tianmu.core.errors import ConfigError, InputError, TianmuError
from tianmu.gmcrypto.sm2 import generate_key, load_private_key, load_public_key, sign, verify

__all__ = ["EvidenceSigner", "load_signer", "public_key_der", "public_key_path", "verify_signature"]

_NAMES = {"SM2": "evidence-sm2", "Ed25519": "evidence-ed25519"}


@dataclass(frozen=True, slots=True)
class EvidenceSigner:
    """A private key and what the bundle says about it."""

    algorithm: str
    """`SM2` or `Ed25519`."""
    private_pem: bytes
    public_pem: bytes

    def sign(self, data: bytes) -> bytes:
        if self.algorithm == "SM2":
            return sign(load_private_key(self.private_pem, source="evidence key"), data)
        key = serialization.load_pem_private_key(self.private_pem, password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return key.sign(data)


def _sm2_available() -> bool:
    try:
        generate_key()
    except Exception:  # no OpenSSL 3 libcrypto with SM2 on this machine: fall back to Ed25519
        return False
    return True


def public_key_path(home: Path, algorithm: str = "SM2") -> Path:
    """Where the public half of the installation's evidence key is written (for `verify --key`)."""
    return home / "keys" / f"{_NAMES[algorithm]}.pub.pem"


def _public_pem(algorithm: str, private_pem: bytes) -> bytes:
    if algorithm == "SM2":
        return load_private_key(private_pem, source="evidence key").public_key.to_pem()
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _fresh(algorithm: str) -> bytes:
    if algorithm == "SM2":
        return generate_key().to_pem()
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    # Beside and rename, so a crash never leaves half a key; O_EXCL on the temporary name.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _signer(home: Path, algorithm: str) -> EvidenceSigner:
    keys = home / "keys"
    name = _NAMES[algorithm]
    sealed_path, plain_path = keys / f"{name}.key.sealed", keys / f"{name}.pem"
    sealing_key = gmcrypto.derive_key(gmcrypto.master_key(home), "evidence-key")
    aad = f"tianmu:{name}".encode("ascii")
    if sealed_path.exists():
        try:
            private_pem = gmcrypto.open(sealing_key, sealed_path.read_bytes(), aad=aad)
        except gmcrypto.IntegrityError as exc:
            raise ConfigError(
                f"{sealed_path}: cannot unseal the evidence key "
                "(a different TIANMU_MASTER_KEY or master.key?)"
            ) from exc
    else:
        # An older installation's plain key is kept (sealed now), else a new one is made.
        private_pem = plain_path.read_bytes() if plain_path.exists() else _fresh(algorithm)
        _write(sealed_path, gmcrypto.seal(sealing_key, private_pem, aad=aad), 0o600)
        plain_path.unlink(missing_ok=True)
    public_pem = _public_pem(algorithm, private_pem)
    public_path = public_key_path(home, algorithm)
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        _write(public_path, public_pem, 0o644)
    return EvidenceSigner(algorithm, private_pem, public_pem)


def load_signer(home: Path) -> EvidenceSigner:
    """The installation's evidence key from `home/keys/`, created (sealed, mode 0600) on first use."""
    keys = home / "keys"
    try:
        has_sm2 = (keys / "evidence-sm2.key.sealed").exists() or (keys / "evidence-sm2.pem").exists()
        has_ed = (keys / "evidence-ed25519.key.sealed").exists() or (keys / "evidence-ed25519.pem").exists()
        return _signer(home, "SM2" if has_sm2 or (not has_ed and _sm2_available()) else "Ed25519")
    except OSError as exc:
        raise InputError(
            f"cannot read or create the evidence signing key: {exc.strerror}", str(keys)
        ) from exc


def verify_signature(algorithm: str, public_pem: bytes, data: bytes, signature: bytes) -> bool:
    try:
        if algorithm == "SM2":
            return bool(verify(load_public_key(public_pem, source="bundle"), data, signature))
        if algorithm == "Ed25519":
            key = serialization.load_pem_public_key(public_pem)
            if not isinstance(key, Ed25519PublicKey):
                return False
            try:
                key.verify(signature, data)
            except InvalidSignature:
                return False
            return True
    # A bundle may name one algorithm and carry a key of another (an SM2 key labelled Ed25519 is
    # UnsupportedAlgorithm to `cryptography`): that is a signature that does not verify, not a crash.
    except (TianmuError, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return False


def public_key_der(data: bytes, source: str) -> bytes | None:
    """The SubjectPublicKeyInfo (DER) of a key in any form we read — SM2 or Ed25519, public or private,
    PEM or DER — or None when `data` is no key we know."""
    private = b"PRIVATE KEY" in data
    try:
        sm2_key = (
            load_private_key(data, source=source).public_key
            if private
            else load_public_key(data, source=source)
        )
        return sm2_key.to_der()
    except TianmuError:
        pass  # not SM2: the other algorithms are `cryptography`'s
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    loaders: tuple[Callable[[bytes], Any], ...] = (
        (
            lambda d: serialization.load_pem_private_key(d, password=None).public_key(),
            lambda d: serialization.load_der_private_key(d, password=None).public_key(),
        )
        if private
        else (serialization.load_pem_public_key, serialization.load_der_public_key)
    )
    for load in loaders:
        try:
            return bytes(load(data).public_bytes(*fmt))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return None
