"""Pure-Python SM2 (GB/T 32918), the deterministic reference path.

Why this exists beside the native path: OpenSSL draws the signature and encryption nonce k from its own
random generator and offers no way to pass one in, so the standard's worked examples — which fix k — can
only be reproduced byte for byte by an implementation that takes k as an argument. This module does, over
any short-Weierstrass curve (the GB/T 32918.2/.4 examples use a 256-bit *test* curve, the .5 examples the
recommended one). The tests use it to reproduce every published vector, then check the native OpenSSL path
against it (each verifies and decrypts what the other produced). It is also the fallback when no OpenSSL 3
libcrypto is present, at roughly a hundred operations per second: never on a hot path.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from tianmu.gmcrypto.errors import CryptoError, IntegrityError
from tianmu.gmcrypto.sm3 import digest

__all__ = [
    "SM2_CURVE",
    "Curve",
    "Point",
    "decrypt",
    "encrypt",
    "kdf",
    "key_exchange",
    "public_key",
    "sign",
    "verify",
    "z_value",
]

Point = tuple[int, int] | None
"""An affine point; None is the point at infinity."""


@dataclass(frozen=True, slots=True)
class Curve:
    """y² = x³ + ax + b over GF(p), base point (gx, gy) of prime order n."""

    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    @property
    def size(self) -> int:
        return (self.p.bit_length() + 7) // 8

    @property
    def g(self) -> tuple[int, int]:
        return (self.gx, self.gy)

    # Jacobian coordinates: one inversion per scalar multiplication instead of one per addition.
    def _double(self, x: int, y: int, z: int) -> tuple[int, int, int]:
        p = self.p
        if y == 0 or z == 0:
            return (0, 1, 0)
        yy = y * y % p
        s = 4 * x * yy % p
        zz = z * z % p
        m = (3 * x * x + self.a * zz * zz) % p
        nx = (m * m - 2 * s) % p
        ny = (m * (s - nx) - 8 * yy * yy) % p
        return (nx, ny, 2 * y * z % p)

    def _add(self, p1: tuple[int, int, int], p2: tuple[int, int, int]) -> tuple[int, int, int]:
        p = self.p
        x1, y1, z1 = p1
        x2, y2, z2 = p2
        if z1 == 0:
            return p2
        if z2 == 0:
            return p1
        z1z1, z2z2 = z1 * z1 % p, z2 * z2 % p
        u1, u2 = x1 * z2z2 % p, x2 * z1z1 % p
        s1, s2 = y1 * z2 * z2z2 % p, y2 * z1 * z1z1 % p
        if u1 == u2:
            return self._double(x1, y1, z1) if s1 == s2 else (0, 1, 0)
        h = (u2 - u1) % p
        r = (s2 - s1) % p
        hh = h * h % p
        hhh = h * hh % p
        v = u1 * hh % p
        nx = (r * r - hhh - 2 * v) % p
        ny = (r * (v - nx) - s1 * hhh) % p
        return (nx, ny, h * z1 * z2 % p)

    def _affine(self, j: tuple[int, int, int]) -> Point:
        x, y, z = j
        if z == 0:
            return None
        zi = pow(z, -1, self.p)
        zi2 = zi * zi % self.p
        return (x * zi2 % self.p, y * zi2 * zi % self.p)

    def mul(self, k: int, point: Point) -> Point:
        if point is None or k % self.n == 0:
            return None
        acc = (0, 1, 0)
        base = (point[0], point[1], 1)
        for bit in bin(k % self.n)[2:]:
            acc = self._double(*acc)
            if bit == "1":
                acc = self._add(acc, base)
        return self._affine(acc)

    def add(self, p1: Point, p2: Point) -> Point:
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        return self._affine(self._add((p1[0], p1[1], 1), (p2[0], p2[1], 1)))

    def on_curve(self, point: Point) -> bool:
        if point is None:
            return False
        x, y = point
        return 0 <= x < self.p and 0 <= y < self.p and (y * y - x * x * x - self.a * x - self.b) % self.p == 0

    def encode(self, point: Point) -> bytes:
        if point is None:
            raise CryptoError("cannot encode the point at infinity")
        return b"\x04" + point[0].to_bytes(self.size, "big") + point[1].to_bytes(self.size, "big")

    def decode(self, data: bytes) -> tuple[int, int]:
        size = self.size
        if len(data) != 1 + 2 * size or data[0] != 4:
            raise CryptoError("expected an uncompressed point (04 ‖ x ‖ y)")
        point = (int.from_bytes(data[1 : 1 + size], "big"), int.from_bytes(data[1 + size :], "big"))
        if not self.on_curve(point):
            raise CryptoError("point is not on the curve")
        return point


SM2_CURVE = Curve(
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)
"""The recommended curve of GB/T 32918.5."""


def public_key(d: int, curve: Curve = SM2_CURVE) -> tuple[int, int]:
    point = curve.mul(d, curve.g)
    assert point is not None
    return point


def z_value(ident: bytes, pub: tuple[int, int], curve: Curve = SM2_CURVE) -> bytes:
    """Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA), ENTL the ID length in bits (2 bytes)."""
    bits = len(ident) * 8
    if bits > 0xFFFF:
        raise CryptoError("SM2 distinguishing ID is longer than 8191 bytes")
    size = curve.size
    parts = [bits.to_bytes(2, "big"), ident]
    for value in (curve.a, curve.b, curve.gx, curve.gy, pub[0], pub[1]):
        parts.append(value.to_bytes(size, "big"))
    return digest(b"".join(parts))


def sign(
    d: int, message: bytes, ident: bytes, *, k: int | None = None, curve: Curve = SM2_CURVE
) -> tuple[int, int]:
    """(r, s) over SM3(Z ‖ message); `k` fixes the nonce (test vectors only)."""
    n = curve.n
    e = int.from_bytes(digest(z_value(ident, public_key(d, curve), curve) + message), "big")
    while True:
        kk = k if k is not None else secrets.randbelow(n - 1) + 1
        point = curve.mul(kk, curve.g)
        assert point is not None
        r = (e + point[0]) % n
        if r == 0 or r + kk == n:
            if k is not None:
                raise CryptoError("the fixed k gives r = 0 or r + k = n")
            continue
        s = pow(1 + d, -1, n) * (kk - r * d) % n
        if s != 0:
            return r, s
        if k is not None:
            raise CryptoError("the fixed k gives s = 0")


def verify(
    pub: tuple[int, int], message: bytes, ident: bytes, r: int, s: int, *, curve: Curve = SM2_CURVE
) -> bool:
    n = curve.n
    if not (1 <= r < n and 1 <= s < n):
        return False
    t = (r + s) % n
    if t == 0:
        return False
    e = int.from_bytes(digest(z_value(ident, pub, curve) + message), "big")
    point = curve.add(curve.mul(s, curve.g), curve.mul(t, pub))
    return point is not None and (e + point[0]) % n == r


def kdf(z: bytes, klen: int) -> bytes:
    """The SM2 key derivation function: SM3(Z ‖ ct) for ct = 1, 2, ... truncated to `klen` bytes."""
    out = bytearray()
    counter = 1
    while len(out) < klen:
        out += digest(z + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:klen])


def encrypt(pub: tuple[int, int], message: bytes, *, k: int | None = None, curve: Curve = SM2_CURVE) -> bytes:
    """C1 ‖ C3 ‖ C2 (GB/T 32918.4-2016 order); `k` fixes the ephemeral scalar (test vectors only)."""
    size = curve.size
    while True:
        kk = k if k is not None else secrets.randbelow(curve.n - 1) + 1
        c1 = curve.mul(kk, curve.g)
        shared = curve.mul(kk, pub)
        assert c1 is not None and shared is not None
        x2, y2 = (v.to_bytes(size, "big") for v in shared)
        t = kdf(x2 + y2, len(message))
        if any(t) or not message:
            break
        if k is not None:
            raise CryptoError("the fixed k derives an all-zero key stream")
    c2 = bytes(a ^ b for a, b in zip(message, t, strict=True))
    c3 = digest(x2 + message + y2)
    return curve.encode(c1) + c3 + c2


def decrypt(d: int, ciphertext: bytes, *, order: str = "c1c3c2", curve: Curve = SM2_CURVE) -> bytes:
    size = curve.size
    head = 1 + 2 * size
    if len(ciphertext) < head + 32:
        raise IntegrityError("SM2 ciphertext is too short")
    c1 = curve.decode(ciphertext[:head])
    if order == "c1c3c2":
        c3, c2 = ciphertext[head : head + 32], ciphertext[head + 32 :]
    elif order == "c1c2c3":
        c2, c3 = ciphertext[head:-32], ciphertext[-32:]
    else:
        raise CryptoError(f"unknown SM2 ciphertext order {order!r}")
    shared = curve.mul(d, c1)
    assert shared is not None
    x2, y2 = (v.to_bytes(size, "big") for v in shared)
    t = kdf(x2 + y2, len(c2))
    if c2 and not any(t):
        raise IntegrityError("SM2 decryption failed: all-zero key stream")
    message = bytes(a ^ b for a, b in zip(c2, t, strict=True))
    if digest(x2 + message + y2) != c3:
        raise IntegrityError("SM2 decryption failed: C3 does not match (wrong key or altered ciphertext)")
    return message


def key_exchange(
    *,
    d: int,
    pub: tuple[int, int],
    ephemeral: int,
    peer_pub: tuple[int, int],
    peer_ephemeral_pub: tuple[int, int],
    z_self: bytes,
    z_peer: bytes,
    klen: int,
    initiator: bool,
    curve: Curve = SM2_CURVE,
) -> tuple[bytes, bytes, bytes]:
    """GB/T 32918.3 key agreement: returns (shared key, S_own, S_expected_from_peer).

    The initiator (A) sends S_A = S2 and expects S_B = S1; the responder the reverse. Optional
    confirmation hashes are returned so callers can send and check them.
    """
    n = curve.n
    w = (n.bit_length() + 1) // 2 - 1
    two_w = 1 << w
    own_r = curve.mul(ephemeral, curve.g)
    assert own_r is not None
    if not curve.on_curve(peer_ephemeral_pub) or not curve.on_curve(peer_pub):
        raise CryptoError("peer key or ephemeral point is not on the curve")
    x_own = two_w + (own_r[0] & (two_w - 1))
    x_peer = two_w + (peer_ephemeral_pub[0] & (two_w - 1))
    t = (d + x_own * ephemeral) % n
    # cofactor h = 1 on the SM2 curves
    shared = curve.mul(t, curve.add(peer_pub, curve.mul(x_peer, peer_ephemeral_pub)))
    if shared is None:
        raise CryptoError("key exchange produced the point at infinity")
    size = curve.size
    xu, yu = (v.to_bytes(size, "big") for v in shared)
    za, zb = (z_self, z_peer) if initiator else (z_peer, z_self)
    ra, rb = (own_r, peer_ephemeral_pub) if initiator else (peer_ephemeral_pub, own_r)
    key = kdf(xu + yu + za + zb, klen)
    inner = digest(xu + za + zb + b"".join(v.to_bytes(size, "big") for v in (ra[0], ra[1], rb[0], rb[1])))
    s1 = digest(b"\x02" + yu + inner)
    s2 = digest(b"\x03" + yu + inner)
    # S1 is what B sends (and A checks); S2 is what A sends (and B checks).
    return (key, s2, s1) if initiator else (key, s1, s2)
