"""SM2 (GB/T 32918) on the system OpenSSL 3: keys, signatures with the Z value, encryption, key exchange.

Every signature sets the distinguishing ID explicitly (default ``1234567812345678``): OpenSSL 3 otherwise
signs with an empty ID, which no other SM2 implementation verifies. Signatures are DER ``SEQUENCE {r, s}``;
ciphertexts are the standard's raw ``C1 ‖ C3 ‖ C2`` by default (DER and the older C1 ‖ C2 ‖ C3 accepted).
Without an OpenSSL 3 libcrypto, `tianmu.gmcrypto.reference` takes over at reference speed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tianmu.gmcrypto import _libcrypto as native
from tianmu.gmcrypto import reference
from tianmu.gmcrypto.asn1 import decode_cipher, decode_signature, encode_cipher, encode_signature
from tianmu.gmcrypto.errors import BackendError, CryptoError, IntegrityError, KeyFormatError
from tianmu.gmcrypto.reference import SM2_CURVE
from tianmu.gmcrypto.sm3 import digest

__all__ = [
    "DEFAULT_ID",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "decrypt",
    "encrypt",
    "generate_key",
    "key_exchange",
    "load_private_key",
    "load_public_key",
    "sign",
    "verify",
    "z_value",
]

DEFAULT_ID = b"1234567812345678"
Order = Literal["c1c3c2", "c1c2c3"]
_SIZE = 32
_PUBLIC_SELECTION = 0x86


def _lib() -> tuple[Any, Any]:
    return native.load()


def _pkey_from_params(priv: int | None, pub: bytes) -> Any:
    ffi, lib = _lib()
    bld = lib.OSSL_PARAM_BLD_new()
    bn = ffi.NULL
    params = ffi.NULL
    ctx = ffi.NULL
    try:
        native.check(lib.OSSL_PARAM_BLD_push_utf8_string(bld, b"group", b"SM2", 0), "group param")
        native.check(lib.OSSL_PARAM_BLD_push_octet_string(bld, b"pub", pub, len(pub)), "pub param")
        if priv is not None:
            raw = priv.to_bytes(_SIZE, "big")
            bn = lib.BN_bin2bn(raw, len(raw), ffi.NULL)
            native.check(lib.OSSL_PARAM_BLD_push_BN(bld, b"priv", bn), "priv param")
        params = lib.OSSL_PARAM_BLD_to_param(bld)
        ctx = lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL)
        native.check(lib.EVP_PKEY_fromdata_init(ctx), "EVP_PKEY_fromdata_init")
        out = ffi.new("EVP_PKEY **")
        selection = native.EVP_PKEY_KEYPAIR if priv is not None else _PUBLIC_SELECTION
        native.check(lib.EVP_PKEY_fromdata(ctx, out, selection, params), "EVP_PKEY_fromdata")
        return ffi.gc(out[0], lib.EVP_PKEY_free)
    finally:
        if ctx != ffi.NULL:
            lib.EVP_PKEY_CTX_free(ctx)
        if params != ffi.NULL:
            lib.OSSL_PARAM_free(params)
        if bn != ffi.NULL:
            lib.BN_clear_free(bn)
        lib.OSSL_PARAM_BLD_free(bld)


def _point_mul(scalar: int, point: tuple[int, int] | None) -> tuple[int, int]:
    """[scalar]point (or [scalar]G) on the SM2 curve with OpenSSL's constant-time ladder."""
    ffi, lib = _lib()
    group = lib.EC_GROUP_new_by_curve_name(native.NID_SM2)
    bnctx = lib.BN_CTX_new()
    result = lib.EC_POINT_new(group)
    src = ffi.NULL
    raw = (scalar % SM2_CURVE.n).to_bytes(_SIZE, "big")
    k = lib.BN_bin2bn(raw, _SIZE, ffi.NULL)
    try:
        if point is None:
            native.check(lib.EC_POINT_mul(group, result, k, ffi.NULL, ffi.NULL, bnctx), "EC_POINT_mul")
        else:
            src = lib.EC_POINT_new(group)
            enc = SM2_CURVE.encode(point)
            native.check(lib.EC_POINT_oct2point(group, src, enc, len(enc), bnctx), "EC_POINT_oct2point")
            native.check(lib.EC_POINT_mul(group, result, ffi.NULL, src, k, bnctx), "EC_POINT_mul")
        if lib.EC_POINT_is_at_infinity(group, result):
            raise CryptoError("scalar multiplication gave the point at infinity")
        buf = ffi.new("unsigned char[]", 65)
        size = lib.EC_POINT_point2oct(group, result, native.POINT_CONVERSION_UNCOMPRESSED, buf, 65, bnctx)
        return SM2_CURVE.decode(bytes(ffi.buffer(buf, size)))
    finally:
        lib.BN_clear_free(k)
        if src != ffi.NULL:
            lib.EC_POINT_free(src)
        lib.EC_POINT_free(result)
        lib.BN_CTX_free(bnctx)
        lib.EC_GROUP_free(group)


def _native_available() -> bool:
    try:
        _lib()
    except BackendError:
        return False
    return True


def _bio_bytes(bio: Any) -> bytes:
    ffi, lib = _lib()
    ptr = ffi.new("char **")
    size = lib.BIO_ctrl(bio, native.BIO_CTRL_INFO, 0, ptr)
    return bytes(ffi.buffer(ptr[0], size))


@dataclass(frozen=True, slots=True, eq=False)
class Sm2PublicKey:
    """An SM2 public key (a point on the recommended curve)."""

    point: tuple[int, int]
    _pkey: Any = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Sm2PublicKey:
        """From the uncompressed encoding 04 ‖ x ‖ y."""
        try:
            point = SM2_CURVE.decode(data)
        except CryptoError as exc:
            raise KeyFormatError(f"not an SM2 public point: {exc}") from exc
        return cls(point, _pkey_from_params(None, data) if _native_available() else None)

    def to_bytes(self) -> bytes:
        return SM2_CURVE.encode(self.point)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sm2PublicKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(self.point)

    @property
    def native(self) -> Any:
        if self._pkey is None:
            raise BackendError("no OpenSSL 3 libcrypto: this key has no native form")
        return self._pkey

    def to_der(self) -> bytes:
        """SubjectPublicKeyInfo (id-ecPublicKey with the SM2 curve OID 1.2.156.10197.1.301)."""
        ffi, lib = _lib()
        pp = ffi.new("unsigned char **")
        size = lib.i2d_PUBKEY(self.native, ffi.NULL)
        native.check(size, "i2d_PUBKEY")
        buf = ffi.new("unsigned char[]", size)
        pp[0] = buf
        lib.i2d_PUBKEY(self.native, pp)
        return bytes(ffi.buffer(buf, size))

    def to_pem(self) -> bytes:
        _ffi, lib = _lib()
        bio = lib.BIO_new(lib.BIO_s_mem())
        try:
            native.check(lib.PEM_write_bio_PUBKEY(bio, self.native), "PEM_write_bio_PUBKEY")
            return _bio_bytes(bio)
        finally:
            lib.BIO_free(bio)

    def fingerprint(self) -> str:
        """Hex SM3 of the DER SubjectPublicKeyInfo: a stable name for this key."""
        return digest(self.to_der()).hex()


@dataclass(frozen=True, slots=True, eq=False)
class Sm2PrivateKey:
    """An SM2 private key; `public_key` is its public half."""

    value: int
    public_key: Sm2PublicKey
    _pkey: Any = None

    @classmethod
    def from_value(cls, value: int) -> Sm2PrivateKey:
        if not 1 <= value < SM2_CURVE.n - 1:
            raise KeyFormatError("SM2 private key must be in [1, n-2]")
        if _native_available():
            point = _point_mul(value, None)
            enc = SM2_CURVE.encode(point)
            return cls(
                value, Sm2PublicKey(point, _pkey_from_params(None, enc)), _pkey_from_params(value, enc)
            )
        return cls(value, Sm2PublicKey(reference.public_key(value)))

    @classmethod
    def _from_native(cls, pkey: Any) -> Sm2PrivateKey:
        ffi, lib = _lib()
        if not lib.EVP_PKEY_is_a(pkey, b"SM2"):
            raise KeyFormatError("the key is not an SM2 key (expected the SM2 curve 1.2.156.10197.1.301)")
        bn = ffi.new("BIGNUM **")
        native.check(lib.EVP_PKEY_get_bn_param(pkey, b"priv", bn), "reading the private scalar")
        buf = ffi.new("unsigned char[]", _SIZE)
        lib.BN_bn2binpad(bn[0], buf, _SIZE)
        lib.BN_clear_free(bn[0])
        value = int.from_bytes(bytes(ffi.buffer(buf, _SIZE)), "big")
        pub = ffi.new("unsigned char[]", 65)
        size = ffi.new("size_t *")
        native.check(lib.EVP_PKEY_get_octet_string_param(pkey, b"pub", pub, 65, size), "reading the point")
        enc = bytes(ffi.buffer(pub, size[0]))
        return cls(value, Sm2PublicKey(SM2_CURVE.decode(enc), _pkey_from_params(None, enc)), pkey)

    @property
    def native(self) -> Any:
        if self._pkey is None:
            raise BackendError("no OpenSSL 3 libcrypto: this key has no native form")
        return self._pkey

    def to_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with SM4-CBC under `password` when one is given."""
        ffi, lib = _lib()
        bio = lib.BIO_new(lib.BIO_s_mem())
        try:
            if password:
                raise CryptoError("password-protected SM2 keys are not written; seal the file instead")
            native.check(
                lib.PEM_write_bio_PKCS8PrivateKey(
                    bio, self.native, ffi.NULL, ffi.NULL, 0, ffi.NULL, ffi.NULL
                ),
                "PEM_write_bio_PKCS8PrivateKey",
            )
            return _bio_bytes(bio)
        finally:
            lib.BIO_free(bio)

    def to_der(self) -> bytes:
        ffi, lib = _lib()
        bio = lib.BIO_new(lib.BIO_s_mem())
        try:
            native.check(
                lib.i2d_PKCS8PrivateKey_bio(bio, self.native, ffi.NULL, ffi.NULL, 0, ffi.NULL, ffi.NULL),
                "i2d_PKCS8PrivateKey_bio",
            )
            return _bio_bytes(bio)
        finally:
            lib.BIO_free(bio)


def generate_key() -> Sm2PrivateKey:
    """A fresh SM2 key pair from OpenSSL's generator."""
    if not _native_available():
        return Sm2PrivateKey.from_value(secrets.randbelow(SM2_CURVE.n - 2) + 1)
    ffi, lib = _lib()
    ctx = lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL)
    try:
        native.check(lib.EVP_PKEY_keygen_init(ctx), "EVP_PKEY_keygen_init")
        out = ffi.new("EVP_PKEY **")
        native.check(lib.EVP_PKEY_generate(ctx, out), "EVP_PKEY_generate")
    finally:
        lib.EVP_PKEY_CTX_free(ctx)
    return Sm2PrivateKey._from_native(ffi.gc(out[0], lib.EVP_PKEY_free))


def load_private_key(data: bytes, *, source: str = "key", password: bytes | None = None) -> Sm2PrivateKey:
    """A PKCS#8 (or SEC1) private key, PEM or DER; `source` names the file in errors."""
    ffi, lib = _lib()
    bio = lib.BIO_new_mem_buf(data, len(data))
    # A non-NULL passphrase stops OpenSSL from prompting on the terminal for an encrypted key.
    passphrase = ffi.new("char[]", password or b"")
    try:
        if data.lstrip().startswith(b"-----"):
            pkey = lib.PEM_read_bio_PrivateKey(bio, ffi.NULL, ffi.NULL, passphrase)
        else:
            pkey = lib.d2i_PrivateKey_bio(bio, ffi.NULL)
    finally:
        lib.BIO_free(bio)
    if pkey == ffi.NULL:
        raise KeyFormatError(
            f"{source}: not a readable SM2 private key (PKCS#8 PEM or DER): {native.last_error(lib, ffi)}"
        )
    pkey = ffi.gc(pkey, lib.EVP_PKEY_free)
    try:
        return Sm2PrivateKey._from_native(pkey)
    except KeyFormatError as exc:
        raise KeyFormatError(f"{source}: {exc}") from exc


def load_public_key(data: bytes, *, source: str = "key") -> Sm2PublicKey:
    """A SubjectPublicKeyInfo, PEM or DER, or a raw 04 ‖ x ‖ y point."""
    ffi, lib = _lib()
    if len(data) == 65 and data[0] == 4:
        return Sm2PublicKey.from_bytes(data)
    if data.lstrip().startswith(b"-----"):
        bio = lib.BIO_new_mem_buf(data, len(data))
        try:
            pkey = lib.PEM_read_bio_PUBKEY(bio, ffi.NULL, ffi.NULL, ffi.NULL)
        finally:
            lib.BIO_free(bio)
    else:
        buf = ffi.new("unsigned char[]", data)
        pp = ffi.new("const unsigned char **", buf)
        pkey = lib.d2i_PUBKEY(ffi.NULL, pp, len(data))
    if pkey == ffi.NULL:
        raise KeyFormatError(f"{source}: not a readable SM2 public key: {native.last_error(lib, ffi)}")
    pkey = ffi.gc(pkey, lib.EVP_PKEY_free)
    if not lib.EVP_PKEY_is_a(pkey, b"SM2"):
        raise KeyFormatError(f"{source}: the key is not on the SM2 curve")
    pub = ffi.new("unsigned char[]", 65)
    size = ffi.new("size_t *")
    native.check(lib.EVP_PKEY_get_octet_string_param(pkey, b"pub", pub, 65, size), "reading the point")
    return Sm2PublicKey(SM2_CURVE.decode(bytes(ffi.buffer(pub, size[0]))), pkey)


def _public(key: Sm2PublicKey | Sm2PrivateKey) -> Sm2PublicKey:
    return key.public_key if isinstance(key, Sm2PrivateKey) else key


def z_value(key: Sm2PublicKey | Sm2PrivateKey, ident: bytes = DEFAULT_ID) -> bytes:
    return reference.z_value(ident, _public(key).point)


def _md_ctx(pkey: Any, ident: bytes) -> tuple[Any, Any]:
    ffi, lib = _lib()
    mctx = lib.EVP_MD_CTX_new()
    pctx = lib.EVP_PKEY_CTX_new_from_pkey(ffi.NULL, pkey, ffi.NULL)
    if lib.EVP_PKEY_CTX_set1_id(pctx, ident, len(ident)) <= 0:
        lib.EVP_PKEY_CTX_free(pctx)
        lib.EVP_MD_CTX_free(mctx)
        native.check(0, "EVP_PKEY_CTX_set1_id")
    # The MD context takes ownership of pctx and frees it with itself.
    lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
    return mctx, pctx


def sign(key: Sm2PrivateKey, data: bytes, *, ident: bytes = DEFAULT_ID) -> bytes:
    """DER SM2 signature over SM3(Z ‖ data), Z from `ident` (default 1234567812345678)."""
    if key._pkey is None:
        r, s = reference.sign(key.value, data, ident)
        return encode_signature(r, s)
    ffi, lib = _lib()
    mctx, pctx = _md_ctx(key._pkey, ident)
    try:
        native.check(
            lib.EVP_DigestSignInit_ex(mctx, ffi.NULL, b"SM3", ffi.NULL, ffi.NULL, key._pkey, ffi.NULL),
            "EVP_DigestSignInit_ex",
        )
        size = ffi.new("size_t *", 80)
        sig = ffi.new("unsigned char[]", 80)
        native.check(lib.EVP_DigestSign(mctx, sig, size, data, len(data)), "EVP_DigestSign")
        return bytes(ffi.buffer(sig, size[0]))
    finally:
        lib.EVP_MD_CTX_free(mctx)
        lib.EVP_PKEY_CTX_free(pctx)


def verify(
    key: Sm2PublicKey | Sm2PrivateKey, data: bytes, signature: bytes, *, ident: bytes = DEFAULT_ID
) -> bool:
    """True when `signature` (DER, or raw r ‖ s of 64 bytes) is valid for `data` under `key`."""
    pub = _public(key)
    if len(signature) == 2 * _SIZE and signature[0] != 0x30:
        signature = encode_signature(
            int.from_bytes(signature[:_SIZE], "big"), int.from_bytes(signature[_SIZE:], "big")
        )
    if pub._pkey is None:
        try:
            r, s = decode_signature(signature)
        except KeyFormatError:
            return False
        return reference.verify(pub.point, data, ident, r, s)
    ffi, lib = _lib()
    mctx, pctx = _md_ctx(pub._pkey, ident)
    try:
        native.check(
            lib.EVP_DigestVerifyInit_ex(mctx, ffi.NULL, b"SM3", ffi.NULL, ffi.NULL, pub._pkey, ffi.NULL),
            "EVP_DigestVerifyInit_ex",
        )
        ok = lib.EVP_DigestVerify(mctx, signature, len(signature), data, len(data))
        lib.ERR_clear_error()
        return bool(ok == 1)
    finally:
        lib.EVP_MD_CTX_free(mctx)
        lib.EVP_PKEY_CTX_free(pctx)


def signature_to_raw(signature: bytes) -> bytes:
    """DER SEQUENCE {r, s} → r ‖ s (32 bytes each), the form some USB keys and web clients use."""
    r, s = decode_signature(signature)
    return r.to_bytes(_SIZE, "big") + s.to_bytes(_SIZE, "big")


def _raw_to_der(data: bytes, order: Order) -> bytes:
    head = 1 + 2 * _SIZE
    if len(data) < head + 32 or data[0] != 4:
        raise IntegrityError("SM2 ciphertext is too short or does not start with an uncompressed point")
    x = int.from_bytes(data[1 : 1 + _SIZE], "big")
    y = int.from_bytes(data[1 + _SIZE : head], "big")
    if order == "c1c3c2":
        c3, c2 = data[head : head + 32], data[head + 32 :]
    else:
        c2, c3 = data[head:-32], data[-32:]
    return encode_cipher(x, y, c3, c2)


def encrypt(
    key: Sm2PublicKey | Sm2PrivateKey, data: bytes, *, order: Order = "c1c3c2", der: bool = False
) -> bytes:
    """SM2 public-key encryption: raw C1 ‖ C3 ‖ C2 (or `order`), or GM/T 0009 DER when `der`."""
    pub = _public(key)
    if pub._pkey is None:
        raw = reference.encrypt(pub.point, data)
        return _raw_to_der(raw, "c1c3c2") if der else _reorder(raw, "c1c3c2", order)
    ffi, lib = _lib()
    ctx = lib.EVP_PKEY_CTX_new_from_pkey(ffi.NULL, pub._pkey, ffi.NULL)
    try:
        native.check(lib.EVP_PKEY_encrypt_init(ctx), "EVP_PKEY_encrypt_init")
        size = ffi.new("size_t *")
        native.check(lib.EVP_PKEY_encrypt(ctx, ffi.NULL, size, data, len(data)), "EVP_PKEY_encrypt")
        out = ffi.new("unsigned char[]", size[0])
        native.check(lib.EVP_PKEY_encrypt(ctx, out, size, data, len(data)), "EVP_PKEY_encrypt")
        encoded = bytes(ffi.buffer(out, size[0]))
    finally:
        lib.EVP_PKEY_CTX_free(ctx)
    if der:
        return encoded
    x, y, c3, c2 = decode_cipher(encoded)
    c1 = b"\x04" + x.to_bytes(_SIZE, "big") + y.to_bytes(_SIZE, "big")
    return c1 + (c3 + c2 if order == "c1c3c2" else c2 + c3)


def _reorder(raw: bytes, have: Order, want: Order) -> bytes:
    if have == want:
        return raw
    head = 1 + 2 * _SIZE
    if have == "c1c3c2":
        return raw[:head] + raw[head + 32 :] + raw[head : head + 32]
    return raw[:head] + raw[-32:] + raw[head:-32]


def _decrypt_der(key: Sm2PrivateKey, der: bytes) -> bytes:
    if key._pkey is None:
        x, y, c3, c2 = decode_cipher(der)
        raw = b"\x04" + x.to_bytes(_SIZE, "big") + y.to_bytes(_SIZE, "big") + c3 + c2
        return reference.decrypt(key.value, raw)
    ffi, lib = _lib()
    ctx = lib.EVP_PKEY_CTX_new_from_pkey(ffi.NULL, key._pkey, ffi.NULL)
    try:
        native.check(lib.EVP_PKEY_decrypt_init(ctx), "EVP_PKEY_decrypt_init")
        size = ffi.new("size_t *")
        if lib.EVP_PKEY_decrypt(ctx, ffi.NULL, size, der, len(der)) <= 0:
            raise IntegrityError(f"SM2 decryption failed: {native.last_error(lib, ffi)}")
        out = ffi.new("unsigned char[]", max(size[0], 1))
        if lib.EVP_PKEY_decrypt(ctx, out, size, der, len(der)) <= 0:
            raise IntegrityError(
                f"SM2 decryption failed (wrong key or altered ciphertext): {native.last_error(lib, ffi)}"
            )
        return bytes(ffi.buffer(out, size[0]))
    finally:
        lib.EVP_PKEY_CTX_free(ctx)


def decrypt(key: Sm2PrivateKey, data: bytes, *, order: Order | None = None) -> bytes:
    """Decrypt raw C1 ‖ C3 ‖ C2, raw C1 ‖ C2 ‖ C3 or DER. With `order` None, raw input is tried as
    C1C3C2 then C1C2C3: the 256-bit C3 check makes a wrong guess fail, never decrypt to garbage."""
    if data[:1] == b"\x30":
        return _decrypt_der(key, data)
    orders: list[Order] = [order] if order else ["c1c3c2", "c1c2c3"]
    last: IntegrityError | None = None
    for candidate in orders:
        try:
            return _decrypt_der(key, _raw_to_der(data, candidate))
        except (IntegrityError, KeyFormatError) as exc:
            last = IntegrityError(str(exc))
    assert last is not None
    raise last


class _NativeCurve(reference.Curve):
    """The SM2 curve with scalar multiplication by OpenSSL (key exchange runs at native speed)."""

    __slots__ = ()

    def mul(self, k: int, point: reference.Point) -> reference.Point:
        if point is None or k % self.n == 0:
            return None
        return _point_mul(k, None if point == self.g else point)


def key_exchange(
    own: Sm2PrivateKey,
    ephemeral: Sm2PrivateKey,
    peer: Sm2PublicKey,
    peer_ephemeral: Sm2PublicKey,
    *,
    initiator: bool,
    klen: int = 16,
    own_id: bytes = DEFAULT_ID,
    peer_id: bytes = DEFAULT_ID,
) -> tuple[bytes, bytes, bytes]:
    """GB/T 32918.3 key agreement: (shared key of `klen` bytes, own confirmation, expected peer
    confirmation). Both sides derive the same key; each sends its confirmation and checks the other's."""
    curve: reference.Curve = SM2_CURVE
    if _native_available():
        curve = _NativeCurve(**{f: getattr(SM2_CURVE, f) for f in ("p", "a", "b", "gx", "gy", "n")})
    return reference.key_exchange(
        d=own.value,
        pub=own.public_key.point,
        ephemeral=ephemeral.value,
        peer_pub=peer.point,
        peer_ephemeral_pub=peer_ephemeral.point,
        z_self=reference.z_value(own_id, own.public_key.point),
        z_peer=reference.z_value(peer_id, peer.point),
        klen=klen,
        initiator=initiator,
        curve=curve,
    )


def read_private_key(path: Path, password: bytes | None = None) -> Sm2PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFormatError(f"{path}: cannot read the key: {exc.strerror}") from exc
    return load_private_key(data, source=str(path), password=password)
