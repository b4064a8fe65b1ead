"""ASN.1 structures of SM2 (GM/T 0009 / GB/T 35276): signatures and ciphertexts, through pyasn1."""

from __future__ import annotations

from pyasn1.codec.der import decoder, encoder  # type: ignore[import-untyped]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
from pyasn1.type import namedtype, univ  # type: ignore[import-untyped]

from tianmu.gmcrypto.errors import KeyFormatError

__all__ = ["decode_cipher", "decode_signature", "encode_cipher", "encode_signature"]


class _Signature(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("r", univ.Integer()),
        namedtype.NamedType("s", univ.Integer()),
    )


class _Cipher(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("x", univ.Integer()),
        namedtype.NamedType("y", univ.Integer()),
        namedtype.NamedType("hash", univ.OctetString()),
        namedtype.NamedType("ciphertext", univ.OctetString()),
    )


def encode_signature(r: int, s: int) -> bytes:
    value = _Signature()
    value["r"] = r
    value["s"] = s
    return bytes(encoder.encode(value))


def decode_signature(der: bytes) -> tuple[int, int]:
    try:
        value, rest = decoder.decode(der, asn1Spec=_Signature())
    except PyAsn1Error as exc:
        raise KeyFormatError(f"not a DER SM2 signature: {exc}") from exc
    if rest:
        raise KeyFormatError("trailing bytes after the DER SM2 signature")
    return int(value["r"]), int(value["s"])


def encode_cipher(x: int, y: int, c3: bytes, c2: bytes) -> bytes:
    value = _Cipher()
    value["x"] = x
    value["y"] = y
    value["hash"] = c3
    value["ciphertext"] = c2
    return bytes(encoder.encode(value))


def decode_cipher(der: bytes) -> tuple[int, int, bytes, bytes]:
    try:
        value, rest = decoder.decode(der, asn1Spec=_Cipher())
    except PyAsn1Error as exc:
        raise KeyFormatError(f"not a DER SM2 ciphertext: {exc}") from exc
    if rest:
        raise KeyFormatError("trailing bytes after the DER SM2 ciphertext")
    return int(value["x"]), int(value["y"]), bytes(value["hash"]), bytes(value["ciphertext"])
