"""What a TLS endpoint offers: certificate (subject, issuer, SAN, validity, key type incl. SM2),
protocol versions, the negotiated cipher, and whether the chain verifies against the system store.

The handshake is Python's `ssl` (OpenSSL); the certificate is read with `cryptography`. SM2 keys are
recognised by their OIDs (`1.2.156.10197.1.301`, signature `1.2.156.10197.1.501` SM2-with-SM3) because
`cryptography` cannot load SM2 public keys itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import warnings
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

__all__ = ["certificate_details", "insecure_context", "inspect_tls"]

SM2_KEY_OID = "1.2.156.10197.1.301"
SM2_SIGNATURE_OID = "1.2.156.10197.1.501"
_SM2_KEY_DER = bytes.fromhex("06082a811ccf5501822d")  # the OID 1.2.156.10197.1.301, DER-encoded

_VERSIONS = (
    ("TLSv1.0", ssl.TLSVersion.TLSv1),
    ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
    ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
    ("TLSv1.3", ssl.TLSVersion.TLSv1_3),
)


def insecure_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that accepts any certificate and (at security level 0) old protocols/ciphers:
    we are inspecting what the server offers, not trusting it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    if version is not None:
        # Old versions are what we look for; Python warns that they are deprecated, which we know.
        with contextlib.suppress(ValueError, ssl.SSLError), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = version
            context.maximum_version = version
    return context


def _name(name: x509.Name) -> str:
    return name.rfc4514_string()


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def _key_type(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        key = cert.public_key()
    except Exception:  # cryptography refuses curves it does not know (SM2 among them)
        key = None
    if (
        key is None or isinstance(key, ec.EllipticCurvePublicKey)
    ) and _SM2_KEY_DER in cert.tbs_certificate_bytes:
        return "SM2", 256
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC ({key.curve.name})", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return "unknown", None


def certificate_details(der: bytes, *, now: datetime | None = None) -> dict[str, Any]:
    """JSON-ready facts about one DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    moment = now or datetime.now(UTC)
    try:
        san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(v) for v in san_ext.get_values_for_type(x509.DNSName)] + [
            str(v) for v in san_ext.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        sans = []
    key_type, key_bits = _key_type(cert)
    try:
        signature = cert.signature_algorithm_oid.dotted_string
        signature_name = (
            "SM2-with-SM3" if signature == SM2_SIGNATURE_OID else cert.signature_algorithm_oid._name
        )
    except Exception:
        signature_name = "unknown"
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    return {
        "subject": _name(cert.subject),
        "subject_cn": _common_name(cert.subject),
        "issuer": _name(cert.issuer),
        "san": sans,
        "serial": format(cert.serial_number, "x"),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "expired": moment > not_after,
        "not_yet_valid": moment < not_before,
        "days_left": (not_after - moment).days,
        "self_signed": cert.subject == cert.issuer,
        "key_type": key_type,
        "key_bits": key_bits,
        "signature_algorithm": signature_name,
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


async def _handshake(
    address: str, port: int, context: ssl.SSLContext, server_name: str | None, timeout: float
) -> ssl.SSLObject | None:
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=context, server_hostname=server_name), timeout
        )
    except (OSError, TimeoutError, ssl.SSLError, EOFError):
        return None
    ssl_object = writer.get_extra_info("ssl_object")
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return ssl_object if isinstance(ssl_object, ssl.SSLObject) else None


async def _verifies(
    address: str, port: int, server_name: str | None, timeout: float, cafile: str | None = None
) -> tuple[bool, str]:
    """Does the chain verify against the system trust store (or `cafile`), for this name?
    (verdict, OpenSSL's reason)"""
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = server_name is not None
    if server_name is None:
        context.verify_mode = ssl.CERT_REQUIRED
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=context, server_hostname=server_name), timeout
        )
    except ssl.SSLCertVerificationError as exc:
        return False, str(exc.verify_message or exc.reason or exc)
    except (OSError, TimeoutError, ssl.SSLError, EOFError) as exc:
        return False, f"{exc.__class__.__name__}: {exc}"
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return True, "ok"


async def inspect_tls(
    address: str,
    port: int,
    *,
    server_name: str | None = None,
    timeout: float = 3.0,
    versions: bool = True,
    cafile: str | None = None,
) -> dict[str, Any] | None:
    """The `tls` object of a service, or None when the port does not speak TLS.

    `versions=False` skips the one-handshake-per-protocol-version survey (4 extra handshakes);
    `cafile` replaces the system trust store for the chain check (an organisation's own CA).
    """
    first = await _handshake(address, port, insecure_context(), server_name, timeout)
    if first is None:
        return None
    der = first.getpeercert(binary_form=True)
    cipher = first.cipher()
    info: dict[str, Any] = {
        "version": first.version(),
        "cipher": cipher[0] if cipher else None,
        "cipher_bits": cipher[2] if cipher else None,
        "alpn": first.selected_alpn_protocol(),
        "certificate": certificate_details(der) if der else None,
    }
    if versions:
        offered = []
        for label, version in _VERSIONS:
            try:
                context = insecure_context(version)
            except (ValueError, ssl.SSLError):
                continue
            if await _handshake(address, port, context, server_name, timeout) is not None:
                offered.append(label)
        info["versions"] = offered
    verified, reason = await _verifies(address, port, server_name, timeout, cafile)
    info["trusted"] = verified
    info["verify_error"] = None if verified else reason
    return info
