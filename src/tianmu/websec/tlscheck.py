"""TLS checks of a website: weak cipher families accepted, and the issues drawn from what
`tianmu.network.tls.inspect_tls` saw (versions, certificate validity, chain, host name)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import Any

from tianmu.core.models import FindingKind, Severity
from tianmu.network.connection import run_sync
from tianmu.network.tls import insecure_context
from tianmu.websec.site import Issue

__all__ = ["WEAK_CIPHER_FAMILIES", "hostname_matches", "tls_issues", "weak_ciphers"]

# Cipher families no server should offer (tested at TLS 1.2 and below, one handshake each). A family
# this OpenSSL build cannot offer at all is skipped and named in the result's notes.
WEAK_CIPHER_FAMILIES = (
    ("NULL encryption", "eNULL"),
    ("anonymous key exchange", "aNULL"),
    ("EXPORT grade", "EXPORT"),
    ("RC4", "RC4"),
    ("DES/3DES", "DES:3DES"),
    ("MD5 MAC", "MD5"),
    ("RSA key exchange (no forward secrecy)", "kRSA"),
)


def hostname_matches(host: str, names: Sequence[str]) -> bool:
    """RFC 6125 matching: exact, or a `*.` wildcard standing for exactly one left-most label."""
    host = host.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


async def _offers(address: str, port: int, spec: str, server_name: str | None, timeout: float) -> bool | None:
    context = insecure_context(ssl.TLSVersion.TLSv1_2)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        context.set_ciphers(f"{spec}:@SECLEVEL=0")
    except ssl.SSLError:
        return None
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=context, server_hostname=server_name), timeout
        )
    except (OSError, TimeoutError, ssl.SSLError, EOFError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return True


def weak_ciphers(
    address: str, port: int, server_name: str | None, timeout: float = 5.0
) -> tuple[list[str], list[str]]:
    """(weak families the server accepts, families this client cannot test)."""

    async def run() -> list[bool | None]:
        return [
            await _offers(address, port, spec, server_name, timeout) for _label, spec in WEAK_CIPHER_FAMILIES
        ]

    results = run_sync(run())
    offered = [label for (label, _s), ok in zip(WEAK_CIPHER_FAMILIES, results, strict=True) if ok]
    untested = [label for (label, _s), ok in zip(WEAK_CIPHER_FAMILIES, results, strict=True) if ok is None]
    return offered, untested


def tls_issues(tls: dict[str, Any], host: str, expiry_days: int) -> list[Issue]:
    out: list[Issue] = []
    cert = tls.get("certificate") or {}
    mis = FindingKind.MISCONFIGURATION
    legacy = [v for v in tls.get("versions") or [] if v in ("TLSv1.0", "TLSv1.1")]
    if legacy:
        out.append(
            Issue(
                "tls.protocol.legacy",
                f"Deprecated TLS versions offered: {', '.join(legacy)}",
                Severity.MEDIUM,
                mis,
                "TLS 1.0 and 1.1 are deprecated (RFC 8996).",
                {"versions": tls.get("versions")},
            )
        )
    if tls.get("versions") and "TLSv1.2" not in tls["versions"] and "TLSv1.3" not in tls["versions"]:
        out.append(
            Issue(
                "tls.protocol.no-modern",
                "Neither TLS 1.2 nor TLS 1.3 is offered",
                Severity.HIGH,
                mis,
                extra={"versions": tls.get("versions")},
            )
        )
    if cert.get("expired"):
        out.append(
            Issue(
                "tls.certificate.expired",
                "The TLS certificate has expired",
                Severity.HIGH,
                mis,
                f"It expired on {cert.get('not_after')}.",
                {"certificate": cert},
            )
        )
    elif cert.get("days_left") is not None and cert["days_left"] < expiry_days:
        out.append(
            Issue(
                "tls.certificate.expiring",
                f"The TLS certificate expires in {cert['days_left']} day(s)",
                Severity.LOW if cert["days_left"] > 7 else Severity.MEDIUM,
                mis,
                f"Renew it before {cert.get('not_after')}.",
                {"certificate": cert},
            )
        )
    if cert.get("not_yet_valid"):
        out.append(
            Issue(
                "tls.certificate.not-yet-valid",
                "The TLS certificate is not valid yet",
                Severity.MEDIUM,
                mis,
                f"Valid from {cert.get('not_before')}.",
                {"certificate": cert},
            )
        )
    if cert.get("self_signed"):
        out.append(
            Issue(
                "tls.certificate.self-signed",
                "Self-signed TLS certificate",
                Severity.MEDIUM,
                mis,
                "Browsers will not trust it; use a certificate from a trusted CA.",
                {"certificate": cert},
            )
        )
    names = list(cert.get("san") or []) or ([cert["subject_cn"]] if cert.get("subject_cn") else [])
    if cert and not hostname_matches(host, names):
        out.append(
            Issue(
                "tls.certificate.hostname-mismatch",
                f"The certificate is not valid for {host}",
                Severity.HIGH,
                mis,
                f"It names {', '.join(names) or 'no host'}.",
                {"names": names},
            )
        )
    error = tls.get("verify_error") or ""
    if (
        not tls.get("trusted")
        and not cert.get("self_signed")
        and not cert.get("expired")
        and "hostname" not in error.lower()
    ):
        out.append(
            Issue(
                "tls.certificate.untrusted-chain",
                "The certificate chain does not verify",
                Severity.HIGH,
                mis,
                f"OpenSSL: {error}",
                {"verify_error": error},
            )
        )
    return out
