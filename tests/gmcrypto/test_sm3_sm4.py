"""SM3 and SM4: the GB/T 32905 and GB/T 32907 worked examples, RFC 8998 SM4-GCM, tampering, openssl."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tianmu import gmcrypto
from tianmu.gmcrypto import sm3, sm4
from tianmu.gmcrypto.errors import CryptoError, IntegrityError

# GB/T 32905-2016 Appendix A
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_512 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
# GB/T 32907-2016 Appendix A, example 1
SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
SM4_BLOCK_CT = "681edf34d206965e86b3e94f536e4246"


def test_sm3_standard_examples() -> None:
    assert gmcrypto.digest(b"abc").hex() == SM3_ABC
    assert sm3.digest(b"abcd" * 16).hex() == SM3_512


def test_sm3_incremental_and_stream_agree() -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    h = sm3.Sm3()
    for i in range(0, len(data), 65_537):
        h.update(data[i : i + 65_537])
    assert h.digest() == sm3.digest(data) == sm3.digest_stream(io.BytesIO(data))
    assert h.copy().update(b"x").digest() != h.digest()


def test_sm3_file_matches_openssl(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(200_000))
    out = openssl("dgst", "-sm3", "-r", path).stdout.decode().split()[0]
    assert sm3.digest_file(path).hex() == out


def test_hmac_sm3_matches_openssl(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "m"
    path.write_bytes(b"what do ya want for nothing?")
    out = openssl("dgst", "-sm3", "-hmac", "Jefe", "-r", path).stdout.decode().split()[0]
    assert sm3.hmac_sm3(b"Jefe", path.read_bytes()).hex() == out
    assert sm3.hmac_verify(b"Jefe", path.read_bytes(), bytes.fromhex(out))
    assert not sm3.hmac_verify(b"jefe", path.read_bytes(), bytes.fromhex(out))


def test_pbkdf2_sm3_first_block_is_rfc8018() -> None:
    # PBKDF2 with one iteration and one block is U1 = PRF(P, S ‖ INT(1)).
    salt, password = b"NaCl-salt", b"correct horse"
    assert sm3.pbkdf2_sm3(password, salt, 1) == sm3.hmac_sm3(password, salt + b"\x00\x00\x00\x01")
    two = sm3.pbkdf2_sm3(password, salt, 2)
    u1 = sm3.hmac_sm3(password, salt + b"\x00\x00\x00\x01")
    u2 = sm3.hmac_sm3(password, u1)
    assert two == bytes(a ^ b for a, b in zip(u1, u2, strict=True))


def test_sm4_single_block_standard_example() -> None:
    assert sm4.ecb_encrypt_block(SM4_KEY, SM4_KEY).hex() == SM4_BLOCK_CT


def test_sm4_gcm_rfc8998_vector() -> None:
    # RFC 8998 Appendix A.1
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plain = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    ct, tag = sm4.gcm_encrypt(key, nonce, plain, aad)
    assert ct.hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    assert tag.hex().upper() == "83DE3541E4C2B58177E065A9BF7B62EC"
    assert sm4.gcm_decrypt(key, nonce, ct, tag, aad) == plain


def test_seal_open_round_trip_and_layout() -> None:
    key = os.urandom(16)
    sealed = gmcrypto.seal(key, b"totp seed", aad=b"user:42")
    assert len(sealed) == 12 + len(b"totp seed") + 16
    assert gmcrypto.open(key, sealed, aad=b"user:42") == b"totp seed"
    assert gmcrypto.seal(key, b"totp seed") != gmcrypto.seal(key, b"totp seed")  # fresh nonce


@pytest.mark.parametrize("where", ["nonce", "body", "tag"])
def test_open_detects_tampering(where: str) -> None:
    key = os.urandom(16)
    sealed = bytearray(gmcrypto.seal(key, b"quarantined bytes" * 10))
    index = {"nonce": 3, "body": 30, "tag": len(sealed) - 1}[where]
    sealed[index] ^= 0x01
    with pytest.raises(IntegrityError) as info:
        gmcrypto.open(key, bytes(sealed))
    assert isinstance(info.value, gmcrypto.CryptoError)


def test_open_refuses_wrong_key_wrong_aad_and_short_input() -> None:
    key = os.urandom(16)
    sealed = gmcrypto.seal(key, b"x", aad=b"a")
    with pytest.raises(IntegrityError):
        gmcrypto.open(os.urandom(16), sealed, aad=b"a")
    with pytest.raises(IntegrityError):
        gmcrypto.open(key, sealed, aad=b"b")
    with pytest.raises(IntegrityError):
        gmcrypto.open(key, sealed[:20])
    with pytest.raises(CryptoError):
        gmcrypto.seal(b"short", b"x")


def test_stream_seal_is_the_same_format(tmp_path: Path) -> None:
    key = os.urandom(16)
    data = os.urandom(2 * (1 << 20) + 5)
    out = io.BytesIO()
    sm4.seal_stream(key, io.BytesIO(data), out, aad=b"q")
    sealed = out.getvalue()
    assert gmcrypto.open(key, sealed, aad=b"q") == data
    back = io.BytesIO()
    sm4.open_stream(key, io.BytesIO(sealed), back, len(sealed), aad=b"q")
    assert back.getvalue() == data
    broken = bytearray(sealed)
    broken[100] ^= 0xFF
    with pytest.raises(IntegrityError):
        sm4.open_stream(key, io.BytesIO(bytes(broken)), io.BytesIO(), len(broken), aad=b"q")


def test_cbc_matches_openssl_and_ctr_round_trips(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    key, iv = os.urandom(16), os.urandom(16)
    plain = b"SM4-CBC interoperability " * 7
    ct = sm4.cbc_encrypt(key, iv, plain)
    (tmp_path / "p").write_bytes(plain)
    openssl(
        "enc", "-sm4-cbc", "-K", key.hex(), "-iv", iv.hex(), "-in", tmp_path / "p", "-out", tmp_path / "c"
    )
    assert (tmp_path / "c").read_bytes() == ct
    assert sm4.cbc_decrypt(key, iv, ct) == plain
    # CBC: flipping a byte of the second-to-last block flips the same byte of the last plaintext block, so
    # zeroing the final padding byte makes the padding invalid, deterministically.
    pad = 16 - len(plain) % 16
    tampered = bytearray(ct)
    tampered[-17] ^= pad
    with pytest.raises(IntegrityError, match="padding"):
        sm4.cbc_decrypt(key, iv, bytes(tampered))
    with pytest.raises(CryptoError, match="multiple of 16"):
        sm4.cbc_decrypt(key, iv, ct[:-1])
    counter = os.urandom(16)
    assert sm4.ctr_crypt(key, counter, sm4.ctr_crypt(key, counter, plain)) == plain


def test_master_key_file_and_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = gmcrypto.master_key(home, environ={})
    path = home / "master.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert gmcrypto.master_key(home, environ={}) == key
    hex_key = os.urandom(16)
    assert gmcrypto.master_key(home, environ={"TIANMU_MASTER_KEY": hex_key.hex()}) == hex_key
    import base64

    b64 = base64.b64encode(hex_key).decode()
    assert gmcrypto.master_key(home, environ={"TIANMU_MASTER_KEY": b64}) == hex_key
    from tianmu.core.errors import ConfigError

    with pytest.raises(ConfigError, match="TIANMU_MASTER_KEY"):
        gmcrypto.master_key(home, environ={"TIANMU_MASTER_KEY": "not-a-key"})
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        gmcrypto.master_key(home, environ={})


def test_derived_keys_are_separate_per_purpose() -> None:
    kek = os.urandom(16)
    a, b = gmcrypto.derive_key(kek, "totp"), gmcrypto.derive_key(kek, "quarantine")
    assert len(a) == len(b) == 16 and a != b
    with pytest.raises(IntegrityError):
        gmcrypto.open(b, gmcrypto.seal(a, b"secret"))
