"""X.509 certificates with SM2 keys and SM3withSM2 signatures: parse, verify chains, issue.

`cryptography` parses the certificate structure (names, validity, extensions) but cannot load an SM2 public
key or check an SM3withSM2 signature, so the public key is taken from the TBS with pyasn1 and signatures are
checked with `tianmu.gmcrypto.sm2` (default distinguishing ID, as GM/T 0015 prescribes for certificates).
Issuing builds the TBSCertificate with pyasn1-modules' RFC 5280 types; extension values and names are
encoded by `cryptography`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder, encoder  # type: ignore[import-untyped]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
from pyasn1.type import univ, useful  # type: ignore[import-untyped]
from pyasn1_modules import rfc5280  # type: ignore[import-untyped]

from tianmu.gmcrypto import sm2
from tianmu.gmcrypto.errors import CryptoError, KeyFormatError
from tianmu.gmcrypto.sm3 import digest

__all__ = [
    "SM3_WITH_SM2",
    "Certificate",
    "ChainError",
    "issue_certificate",
    "load_certificate",
    "load_certificates",
    "read_public_key",
    "verify_chain",
]

SM3_WITH_SM2 = x509.ObjectIdentifier("1.2.156.10197.1.501")


class ChainError(CryptoError):
    """A certificate chain does not lead to a trusted SM2 CA, or one of its links is invalid."""


@dataclass(frozen=True, slots=True)
class Certificate:
    """A parsed SM2 certificate: `cert` for fields, `public_key` for the SM2 key."""

    cert: x509.Certificate
    public_key: sm2.Sm2PublicKey
    der: bytes

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def issuer(self) -> str:
        return self.cert.issuer.rfc4514_string()

    @property
    def common_name(self) -> str:
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    @property
    def serial_number(self) -> int:
        return self.cert.serial_number

    @property
    def not_before(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    @property
    def is_ca(self) -> bool:
        try:
            return bool(self.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        except x509.ExtensionNotFound:
            return False

    def fingerprint(self) -> str:
        """Hex SM3 of the DER certificate."""
        return digest(self.der).hex()

    def to_pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    def signed_by(self, issuer: Certificate) -> bool:
        if self.cert.signature_algorithm_oid != SM3_WITH_SM2:
            return False
        tbs, signature = self.cert.tbs_certificate_bytes, self.cert.signature
        if sm2.verify(issuer.public_key, tbs, signature):
            return True
        # OpenSSL 3 signs certificates with an empty ID unless told otherwise (`openssl req -x509` without
        # -sigopt distid); the issuer's key still made this signature, so accept that form too.
        return sm2.verify(issuer.public_key, tbs, signature, ident=b"")


def _from_x509(cert: x509.Certificate, source: str) -> Certificate:
    if cert.signature_algorithm_oid != SM3_WITH_SM2:
        raise KeyFormatError(
            f"{source}: certificate is signed with {cert.signature_algorithm_oid.dotted_string}, "
            "expected SM3withSM2 (1.2.156.10197.1.501)"
        )
    try:
        tbs, _ = decoder.decode(cert.tbs_certificate_bytes, asn1Spec=rfc5280.TBSCertificate())
    except PyAsn1Error as exc:
        raise KeyFormatError(f"{source}: unreadable TBSCertificate: {exc}") from exc
    spki = bytes(encoder.encode(tbs["subjectPublicKeyInfo"]))
    return Certificate(cert, sm2.load_public_key(spki, source=source), cert.public_bytes(Encoding.DER))


def load_certificate(data: bytes, *, source: str = "certificate") -> Certificate:
    """One SM2 certificate, PEM or DER."""
    try:
        if data.lstrip().startswith(b"-----"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise KeyFormatError(f"{source}: not an X.509 certificate: {exc}") from exc
    return _from_x509(cert, source)


def load_certificates(data: bytes, *, source: str = "certificates") -> list[Certificate]:
    """Every certificate of a PEM bundle (or a single DER certificate)."""
    if not data.lstrip().startswith(b"-----"):
        return [load_certificate(data, source=source)]
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeyFormatError(f"{source}: not a PEM certificate bundle: {exc}") from exc
    return [_from_x509(c, source) for c in certs]


def read_public_key(path: Path) -> sm2.Sm2PublicKey:
    """The SM2 public key of a file: a public key, the public half of a private key, or a certificate's.

    It lives here rather than in `sm2` because reading a certificate needs this module, which builds on
    `sm2`; `sm2` knowing about certificates would make the two import each other.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFormatError(f"{path}: cannot read the key: {exc.strerror}") from exc
    if b"PRIVATE KEY" in data:
        return sm2.load_private_key(data, source=str(path)).public_key
    if b"CERTIFICATE" in data:
        return load_certificate(data, source=str(path)).public_key
    return sm2.load_public_key(data, source=str(path))


def verify_chain(
    leaf: Certificate,
    intermediates: Sequence[Certificate],
    trusted: Sequence[Certificate],
    *,
    at: dt.datetime | None = None,
    max_depth: int = 5,
) -> list[Certificate]:
    """Build and check the path leaf → ... → a trusted CA; returns it, or raises ChainError saying why.

    Each link: names chain, the issuer is a CA (basicConstraints, keyCertSign when keyUsage is present),
    the SM3withSM2 signature verifies, every certificate is inside its validity window at `at`.
    """
    now = at or dt.datetime.now(dt.UTC)
    path = [leaf]
    pool = list(intermediates)
    trusted_der = {t.der for t in trusted}
    current = leaf
    for _ in range(max_depth + 1):
        if not current.not_before <= now <= current.not_after:
            state = "expired" if now > current.not_after else "not yet valid"
            raise ChainError(
                f"certificate {current.subject!r} is {state} (valid {current.not_before:%Y-%m-%d} "
                f"to {current.not_after:%Y-%m-%d})"
            )
        if current.der in trusted_der:
            return path
        candidates = [c for c in (*trusted, *pool) if c.cert.subject == current.cert.issuer]
        issuer = next((c for c in candidates if current.signed_by(c)), None)
        if issuer is None:
            if candidates:
                raise ChainError(
                    f"the signature of {current.subject!r} does not verify with its issuer's key"
                )
            raise ChainError(
                f"certificate {current.subject!r} was issued by {current.issuer!r}, which is not a trusted CA"
            )
        if not issuer.is_ca:
            raise ChainError(f"issuer {issuer.subject!r} is not a CA (basicConstraints)")
        limit = issuer.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        if limit is not None and len(path) - 1 > limit:
            raise ChainError(f"issuer {issuer.subject!r} allows {limit} CA(s) below it (pathLenConstraint)")
        try:
            usage = issuer.cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not usage.key_cert_sign:
                raise ChainError(f"issuer {issuer.subject!r} may not sign certificates (keyUsage)")
        except x509.ExtensionNotFound:
            pass
        path.append(issuer)
        if issuer in pool:
            pool.remove(issuer)
        current = issuer
    raise ChainError(f"no trusted CA within {max_depth} certificates of {leaf.subject!r}")


def _name(subject: str | x509.Name) -> x509.Name:
    if isinstance(subject, x509.Name):
        return subject
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])


def _time(value: dt.datetime) -> rfc5280.Time:
    t = rfc5280.Time()
    value = value.astimezone(dt.UTC)
    # RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime after.
    if value.year < 2050:
        t["utcTime"] = useful.UTCTime(value.strftime("%y%m%d%H%M%SZ"))
    else:
        t["generalTime"] = useful.GeneralizedTime(value.strftime("%Y%m%d%H%M%SZ"))
    return t


def issue_certificate(
    *,
    subject: str | x509.Name,
    public_key: sm2.Sm2PublicKey,
    issuer_key: sm2.Sm2PrivateKey,
    issuer: Certificate | None = None,
    days: int = 365,
    ca: bool = False,
    path_length: int | None = None,
    not_before: dt.datetime | None = None,
    extra_extensions: Sequence[x509.ExtensionType] = (),
) -> Certificate:
    """Issue (or self-sign, when `issuer` is None) an SM2 certificate signed with SM3withSM2."""
    start = (not_before or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    end = start + dt.timedelta(days=days)
    subject_name = _name(subject)
    issuer_name = issuer.cert.subject if issuer else subject_name
    ski = x509.SubjectKeyIdentifier(bytes.fromhex(public_key.fingerprint())[:20])
    authority_pub = issuer.public_key if issuer else public_key
    aki = x509.AuthorityKeyIdentifier(bytes.fromhex(authority_pub.fingerprint())[:20], None, None)
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True),
        (
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
        (ski, False),
        (aki, False),
    ]
    if not ca:
        extensions.append((x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False))
    extensions.extend((ext, False) for ext in extra_extensions)

    tbs = rfc5280.TBSCertificate()
    tbs["version"] = 2  # v3
    tbs["serialNumber"] = secrets.randbits(127) | 1
    algorithm = rfc5280.AlgorithmIdentifier()
    algorithm["algorithm"] = univ.ObjectIdentifier(SM3_WITH_SM2.dotted_string)
    tbs["signature"] = algorithm
    tbs["issuer"], _ = decoder.decode(issuer_name.public_bytes(), asn1Spec=rfc5280.Name())
    validity = rfc5280.Validity()
    validity["notBefore"] = _time(start)
    validity["notAfter"] = _time(end)
    tbs["validity"] = validity
    tbs["subject"], _ = decoder.decode(subject_name.public_bytes(), asn1Spec=rfc5280.Name())
    tbs["subjectPublicKeyInfo"], _ = decoder.decode(
        public_key.to_der(), asn1Spec=rfc5280.SubjectPublicKeyInfo()
    )
    exts = tbs["extensions"]
    for value, critical in extensions:
        ext = rfc5280.Extension()
        ext["extnID"] = univ.ObjectIdentifier(value.oid.dotted_string)
        ext["critical"] = critical
        ext["extnValue"] = univ.OctetString(value.public_bytes())
        exts.append(ext)
    tbs_der = bytes(encoder.encode(tbs))
    signature = sm2.sign(issuer_key, tbs_der)

    cert = rfc5280.Certificate()
    cert["tbsCertificate"] = tbs
    cert["signatureAlgorithm"] = algorithm
    cert["signature"] = univ.BitString.fromOctetString(signature)
    return load_certificate(
        bytes(encoder.encode(cert)), source=f"certificate for {subject_name.rfc4514_string()}"
    )
