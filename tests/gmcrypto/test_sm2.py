"""SM2: GB/T 32918 parts 2-5 worked examples, native vs reference, key formats, openssl both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tianmu import gmcrypto
from tianmu.gmcrypto import reference, sm2
from tianmu.gmcrypto.asn1 import decode_signature, encode_signature
from tianmu.gmcrypto.errors import IntegrityError, KeyFormatError


def h(text: str) -> int:
    return int(text.replace(" ", ""), 16)


# The 256-bit test curve of GB/T 32918.2-2016 / .3 / .4 examples (not the recommended curve).
TEST_CURVE = reference.Curve(
    p=h("8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3"),
    a=h("787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498"),
    b=h("63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A"),
    gx=h("421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D"),
    gy=h("0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2"),
    n=h("8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7"),
)

# GB/T 32918.5-2017 examples on the recommended curve, ID 1234567812345678.
STD_D = h("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
STD_X = h("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020")
STD_Y = h("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
STD_K = h("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21")
STD_R = h("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3")
STD_S = h("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")
STD_ZA = "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3"
STD_CIPHER = bytes.fromhex(
    "04"
    "04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
    "E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
    "59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
    "21886CA989CA9C7D58087307CA93092D651EFA"
)


def test_part2_signature_example_on_the_test_curve() -> None:
    d = h("128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263")
    pub = reference.public_key(d, TEST_CURVE)
    assert pub == (
        h("0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A"),
        h("7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857"),
    )
    ident = b"ALICE123@YAHOO.COM"
    assert reference.z_value(ident, pub, TEST_CURVE).hex().upper() == (
        "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    )
    k = h("6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F")
    r, s = reference.sign(d, b"message digest", ident, k=k, curve=TEST_CURVE)
    assert r == h("40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1")
    assert s == h("6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7")
    assert reference.verify(pub, b"message digest", ident, r, s, curve=TEST_CURVE)
    assert not reference.verify(pub, b"message digest", b"BILL456@YAHOO.COM", r, s, curve=TEST_CURVE)


def test_part4_encryption_example_on_the_test_curve_c1c2c3() -> None:
    d = h("1649AB77A00637BD5E2EFE283FBF353534AA7F7CB89463F208DDBC2920BB0DA0")
    pub = reference.public_key(d, TEST_CURVE)
    k = h("4C62EEFD6ECFC2B95B92FD6C3D9575148AFA17425546D49018E5388D49DD7B4F")
    c1c3c2 = reference.encrypt(pub, b"encryption standard", k=k, curve=TEST_CURVE)
    # The example prints the 2010 order C1 ‖ C2 ‖ C3.
    expected_c1c2c3 = bytes.fromhex(
        "04245C26FB68B1DDDDB12C4B6BF9F2B6D5FE60A383B0D18D1C4144ABF17F6252E7"
        "76CB9264C2A7E88E52B19903FDC47378F605E36811F5C07423A24B84400F01B8"
        "650053A89B41C418B0C3AAD00D886C00286467"
        "9C3D7360C30156FAB7C80A0276712DA9D8094A634B766D3A285E07480653426D"
    )
    head = 65
    assert c1c3c2[:head] + c1c3c2[head + 32 :] + c1c3c2[head : head + 32] == expected_c1c2c3
    assert reference.decrypt(d, expected_c1c2c3, order="c1c2c3", curve=TEST_CURVE) == b"encryption standard"


def test_part3_key_exchange_example_on_the_test_curve() -> None:
    da = h("6FCBA2EF9AE0AB902BC3BDE3FF915D44BA4CC78F88E2F8E7F8996D3B8CCEEDEE")
    db = h("5E35D7D3F3C54DBAC72E61819E730B019A84208CA3A35E4C2E353DFCCB2A3B53")
    ra = h("83A2C9C8B96E5AF70BD480B472409A9A327257F1EBB73F5B073354B248668563")
    rb = h("33FE21940342161C55619C4A0C060293D543C80AF19748CE176D83477DE71C80")
    pa, pb = reference.public_key(da, TEST_CURVE), reference.public_key(db, TEST_CURVE)
    za = reference.z_value(b"ALICE123@YAHOO.COM", pa, TEST_CURVE)
    zb = reference.z_value(b"BILL456@YAHOO.COM", pb, TEST_CURVE)
    assert za.hex().upper() == "E4D1D0C3CA4C7F11BC8FF8CB3F4C02A78F108FA098E51A668487240F75E20F31"
    assert zb.hex().upper() == "6B4B6D0E276691BD4A11BF72F4FB501AE309FDACB72FA6CC336E6656119ABD67"
    key_a, s_a, expect_b = reference.key_exchange(
        d=da, pub=pa, ephemeral=ra, peer_pub=pb, peer_ephemeral_pub=reference.public_key(rb, TEST_CURVE),
        z_self=za, z_peer=zb, klen=16, initiator=True, curve=TEST_CURVE,
    )  # fmt: skip
    key_b, s_b, expect_a = reference.key_exchange(
        d=db, pub=pb, ephemeral=rb, peer_pub=pa, peer_ephemeral_pub=reference.public_key(ra, TEST_CURVE),
        z_self=zb, z_peer=za, klen=16, initiator=False, curve=TEST_CURVE,
    )  # fmt: skip
    assert key_a == key_b == bytes.fromhex("55B0AC62A6B927BA23703832C853DED4")
    assert s_b == expect_b and s_a == expect_a
    assert s_b.hex().upper() == "284C8F198F141B502E81250F1581C7E9EEB4CA6990F9E02DF388B45471F5BC5C"
    assert s_a.hex().upper() == "23444DAF8ED7534366CB901C84B3BDBB63504F4065C1116C91A4C00697E6CF7A"


def test_part5_examples_reference_fixed_k() -> None:
    pub = reference.public_key(STD_D)
    assert pub == (STD_X, STD_Y)
    assert reference.z_value(sm2.DEFAULT_ID, pub).hex() == STD_ZA
    assert reference.sign(STD_D, b"message digest", sm2.DEFAULT_ID, k=STD_K) == (STD_R, STD_S)
    assert reference.encrypt(pub, b"encryption standard", k=STD_K) == STD_CIPHER


def test_part5_examples_on_the_native_path() -> None:
    # OpenSSL draws k itself, so the native path is checked on what it can be checked on: the key it derives,
    # the published signature it must accept, and the published ciphertext it must open.
    key = sm2.Sm2PrivateKey.from_value(STD_D)
    assert key.native is not None
    assert key.public_key.point == (STD_X, STD_Y)
    assert sm2.z_value(key).hex() == STD_ZA
    signature = encode_signature(STD_R, STD_S)
    assert gmcrypto.verify(key.public_key, b"message digest", signature)
    assert gmcrypto.verify(
        key.public_key, b"message digest", STD_R.to_bytes(32, "big") + STD_S.to_bytes(32, "big")
    )
    assert not gmcrypto.verify(key.public_key, b"message digesT", signature)
    assert not gmcrypto.verify(key.public_key, b"message digest", signature, ident=b"")
    assert gmcrypto.decrypt(key, STD_CIPHER) == b"encryption standard"
    c1c2c3 = STD_CIPHER[:65] + STD_CIPHER[97:] + STD_CIPHER[65:97]
    assert gmcrypto.decrypt(key, c1c2c3) == b"encryption standard"
    assert gmcrypto.decrypt(key, c1c2c3, order="c1c2c3") == b"encryption standard"


def test_native_and_reference_agree_both_ways() -> None:
    key = gmcrypto.generate_key()
    message = b"audit checkpoint 42"
    r, s = decode_signature(gmcrypto.sign(key, message))
    assert reference.verify(key.public_key.point, message, sm2.DEFAULT_ID, r, s)
    r2, s2 = reference.sign(key.value, message, sm2.DEFAULT_ID)
    assert gmcrypto.verify(key.public_key, message, encode_signature(r2, s2))
    assert reference.decrypt(key.value, gmcrypto.encrypt(key.public_key, b"secret")) == b"secret"
    assert gmcrypto.decrypt(key, reference.encrypt(key.public_key.point, b"secret")) == b"secret"


def test_custom_distinguishing_id() -> None:
    key = gmcrypto.generate_key()
    sig = gmcrypto.sign(key, b"m", ident=b"alice@example.org")
    assert gmcrypto.verify(key, b"m", sig, ident=b"alice@example.org")
    assert not gmcrypto.verify(key, b"m", sig)


def test_encryption_refuses_tampering_and_wrong_key() -> None:
    key = gmcrypto.generate_key()
    ct = bytearray(gmcrypto.encrypt(key, b"session key material"))
    assert gmcrypto.decrypt(key, bytes(ct)) == b"session key material"
    assert gmcrypto.decrypt(key, gmcrypto.encrypt(key, b"x", der=True)) == b"x"
    with pytest.raises(IntegrityError):
        gmcrypto.decrypt(gmcrypto.generate_key(), bytes(ct))
    ct[-1] ^= 1
    with pytest.raises(IntegrityError):
        gmcrypto.decrypt(key, bytes(ct))


def test_native_key_exchange_agrees() -> None:
    a, b = gmcrypto.generate_key(), gmcrypto.generate_key()
    ea, eb = gmcrypto.generate_key(), gmcrypto.generate_key()
    ka, sa, expect_b = sm2.key_exchange(
        a, ea, b.public_key, eb.public_key, initiator=True, own_id=b"A", peer_id=b"B"
    )
    kb, sb, expect_a = sm2.key_exchange(
        b, eb, a.public_key, ea.public_key, initiator=False, own_id=b"B", peer_id=b"A"
    )
    assert ka == kb and len(ka) == 16
    assert sa == expect_a and sb == expect_b
    kc, _, _ = sm2.key_exchange(a, ea, b.public_key, gmcrypto.generate_key().public_key, initiator=True)
    assert kc != ka


def test_key_formats_round_trip() -> None:
    key = gmcrypto.generate_key()
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert sm2.load_private_key(pem).value == key.value
    assert sm2.load_private_key(key.to_der()).value == key.value
    pub_pem = key.public_key.to_pem()
    assert pub_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    # SubjectPublicKeyInfo: id-ecPublicKey with the SM2 curve OID 1.2.156.10197.1.301
    assert bytes.fromhex("06082a811ccf5501822d") in key.public_key.to_der()
    assert sm2.load_public_key(pub_pem) == key.public_key
    assert sm2.load_public_key(key.public_key.to_bytes()) == key.public_key


def test_bad_key_files_name_the_source(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KeyFormatError, match=r"keys/broken\.pem"):
        sm2.load_private_key(
            b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", source="keys/broken.pem"
        )
    openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tmp_path / "p256.pem"
    )
    with pytest.raises(KeyFormatError, match="not an SM2 key"):
        sm2.read_private_key(tmp_path / "p256.pem")
    with pytest.raises(KeyFormatError, match="cannot read"):
        sm2.read_private_key(tmp_path / "missing.pem")


def test_openssl_verifies_tianmu_signatures(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    key = gmcrypto.generate_key()
    (tmp_path / "pub.pem").write_bytes(key.public_key.to_pem())
    (tmp_path / "msg").write_bytes(b"signed by tianmu\n")
    (tmp_path / "sig").write_bytes(gmcrypto.sign(key, b"signed by tianmu\n"))
    dgst = openssl(
        "dgst", "-sm3", "-sigopt", "distid:1234567812345678", "-verify", tmp_path / "pub.pem",
        "-signature", tmp_path / "sig", tmp_path / "msg",
    )  # fmt: skip
    assert b"Verified OK" in dgst.stdout
    pkeyutl = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", tmp_path / "pub.pem", "-rawin", "-digest", "sm3",
        "-pkeyopt", "distid:1234567812345678", "-in", tmp_path / "msg", "-sigfile", tmp_path / "sig",
    )  # fmt: skip
    assert b"Signature Verified Successfully" in pkeyutl.stdout
    # OpenSSL's own default (an empty ID) must not accept it: the ID is really in the signature.
    empty = openssl(
        "dgst",
        "-sm3",
        "-verify",
        tmp_path / "pub.pem",
        "-signature",
        tmp_path / "sig",
        tmp_path / "msg",
        check=False,
    )
    assert empty.returncode != 0


def test_tianmu_verifies_and_decrypts_openssl_output(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    openssl("genpkey", "-algorithm", "SM2", "-out", tmp_path / "key.pem")
    (tmp_path / "msg").write_bytes(b"signed by openssl\n")
    openssl(
        "dgst", "-sm3", "-sigopt", "distid:1234567812345678", "-sign", tmp_path / "key.pem",
        "-out", tmp_path / "sig", tmp_path / "msg",
    )  # fmt: skip
    key = sm2.read_private_key(tmp_path / "key.pem")
    assert gmcrypto.verify(key.public_key, b"signed by openssl\n", (tmp_path / "sig").read_bytes())
    openssl(
        "pkeyutl",
        "-encrypt",
        "-inkey",
        tmp_path / "key.pem",
        "-in",
        tmp_path / "msg",
        "-out",
        tmp_path / "ct",
    )
    assert gmcrypto.decrypt(key, (tmp_path / "ct").read_bytes()) == b"signed by openssl\n"
    # and the reverse for encryption: DER ciphertext from Tianmu opened by openssl
    (tmp_path / "ct2").write_bytes(gmcrypto.encrypt(key, b"from tianmu", der=True))
    out = openssl("pkeyutl", "-decrypt", "-inkey", tmp_path / "key.pem", "-in", tmp_path / "ct2").stdout
    assert out == b"from tianmu"


def test_pure_python_fallback_without_libcrypto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sm2, "_native_available", lambda: False)
    key = sm2.generate_key()
    assert key._pkey is None and key.public_key._pkey is None
    signature = sm2.sign(key, b"fallback")
    assert sm2.verify(key.public_key, b"fallback", signature)
    assert not sm2.verify(key.public_key, b"fallback!", signature)
    assert sm2.decrypt(key, sm2.encrypt(key.public_key, b"secret")) == b"secret"
    monkeypatch.undo()
    # and the native path agrees with what the fallback produced
    native = sm2.Sm2PrivateKey.from_value(key.value)
    assert native._pkey is not None and native.public_key == key.public_key
    assert sm2.verify(native.public_key, b"fallback", signature)
