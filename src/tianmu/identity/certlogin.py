"""SM2 certificate login: the server issues a challenge, the client signs it with the SM2 key of its
certificate (a USB key, or a software key through `tianmu login --cert`), the server verifies the signature
and the certificate chain to the tenant's trusted CA.

The signed message binds the challenge to the tenant and the audience (the server's origin), so a signature
collected by one site cannot be replayed to another.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence

from tianmu.gmcrypto import sm2
from tianmu.gmcrypto.errors import CryptoError
from tianmu.gmcrypto.x509 import Certificate, ChainError, load_certificates, verify_chain
from tianmu.identity.errors import AuthenticationError

__all__ = ["challenge_message", "sign_challenge", "verify_certificate_login"]


def challenge_message(tenant: str, audience: str, challenge: str) -> bytes:
    """The exact bytes the client signs."""
    return f"tianmu-cert-login\ntenant={tenant}\naudience={audience}\nchallenge={challenge}\n".encode()


def sign_challenge(key: sm2.Sm2PrivateKey, tenant: str, audience: str, challenge: str) -> str:
    """Client side: base64 DER SM2 signature (default ID) over the challenge message."""
    return base64.b64encode(sm2.sign(key, challenge_message(tenant, audience, challenge))).decode("ascii")


def verify_certificate_login(
    *,
    chain_pem: bytes,
    signature_b64: str,
    message: bytes,
    trusted: Sequence[Certificate],
    revoked_serials: Iterable[str],
    at: dt.datetime,
) -> Certificate:
    """The leaf certificate of `chain_pem` when the signature and chain are good; AuthenticationError else."""
    if not trusted:
        raise AuthenticationError("certificate login is not set up for this tenant", reason="no trusted CA")
    try:
        chain = load_certificates(chain_pem, source="client certificate")
    except CryptoError as exc:
        raise AuthenticationError("the certificate could not be read", reason=str(exc)) from exc
    if not chain:
        raise AuthenticationError("no certificate was sent", reason="empty chain")
    leaf, intermediates = chain[0], chain[1:]
    try:
        path = verify_chain(leaf, intermediates, trusted, at=at)
    except ChainError as exc:
        raise AuthenticationError("the certificate is not trusted", reason=str(exc)) from exc
    revoked = set(revoked_serials)
    for cert in path:
        if format(cert.serial_number, "x") in revoked:
            raise AuthenticationError(
                "the certificate is revoked", reason=f"revoked serial {cert.serial_number:x}"
            )
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError as exc:
        raise AuthenticationError("the signature is not base64", reason="bad signature encoding") from exc
    if not sm2.verify(leaf.public_key, message, signature):
        raise AuthenticationError("the challenge signature does not verify", reason="bad SM2 signature")
    return leaf
