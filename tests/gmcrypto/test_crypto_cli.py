"""`tianmu crypto`: output formats and interoperability with the openssl command line, both ways."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from tianmu.cli.main import app

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_sm3_prints_digest_then_name_like_sha256sum(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path / "a.txt", tmp_path / "b.bin"
    a.write_bytes(b"abc")
    b.write_bytes(os.urandom(5000))
    code, out, _ = run("crypto", "sm3", a, b)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0  {a}"
    assert lines[1].split()[0] == openssl("dgst", "-sm3", "-r", b).stdout.decode().split()[0]
    code, out, err = run("crypto", "sm3", a, tmp_path / "missing")
    assert code == 2 and "missing" in err and out.startswith("66c7f0")


def test_sm4_file_round_trip_and_tampering(tmp_path: Path) -> None:
    key, plain, sealed, back = (tmp_path / n for n in ("k.hex", "p", "p.sm4", "p.out"))
    assert run("crypto", "sm4", "keygen", "--out", key)[0] == 0
    assert key.stat().st_mode & 0o777 == 0o600
    plain.write_bytes(os.urandom(3 * 1024 * 1024 + 3))
    assert run("crypto", "sm4", "encrypt", "--key-file", key, "--in", plain, "--out", sealed)[0] == 0
    assert sealed.stat().st_size == plain.stat().st_size + 28
    assert run("crypto", "sm4", "decrypt", "--key-file", key, "--in", sealed, "--out", back)[0] == 0
    assert back.read_bytes() == plain.read_bytes()
    data = bytearray(sealed.read_bytes())
    data[1000] ^= 1
    sealed.write_bytes(bytes(data))
    back.unlink()
    code, _, err = run("crypto", "sm4", "decrypt", "--key-file", key, "--in", sealed, "--out", back)
    assert code == 2 and "authentication failed" in err and not back.exists()
    (tmp_path / "bad.key").write_text("not a key")
    code, _, err = run(
        "crypto", "sm4", "encrypt", "--key-file", tmp_path / "bad.key", "--in", plain, "--out", sealed
    )
    assert code == 2 and "bad.key" in err and "16-byte" in err


def test_sm2_cli_signature_verifies_with_openssl(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    key, pub, msg, sig = (tmp_path / n for n in ("key.pem", "pub.pem", "msg", "sig"))
    assert run("crypto", "sm2", "keygen", "--out", key, "--pub-out", pub)[0] == 0
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----") and key.stat().st_mode & 0o777 == 0o600
    msg.write_bytes(b"release manifest\n")
    assert run("crypto", "sm2", "sign", "--key", key, "--in", msg, "--out", sig)[0] == 0
    verified = openssl(
        "dgst", "-sm3", "-sigopt", "distid:1234567812345678", "-verify", pub, "-signature", sig, msg
    )
    assert verified.stdout.strip() == b"Verified OK"
    assert run("crypto", "sm2", "verify", "--pub", pub, "--in", msg, "--sig", sig)[0] == 0
    msg.write_bytes(b"release manifest, altered\n")
    code, _, err = run("crypto", "sm2", "verify", "--pub", pub, "--in", msg, "--sig", sig)
    assert code == 1 and "Verification failure" in err


def test_openssl_signature_verifies_with_tianmu_cli(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    key, pub, msg, sig = (tmp_path / n for n in ("key.pem", "pub.pem", "msg", "sig"))
    openssl("genpkey", "-algorithm", "SM2", "-out", key)
    openssl("pkey", "-in", key, "-pubout", "-out", pub)
    msg.write_bytes(b"signed elsewhere\n")
    openssl("dgst", "-sm3", "-sigopt", "distid:1234567812345678", "-sign", key, "-out", sig, msg)
    code, out, _ = run("crypto", "sm2", "verify", "--pub", pub, "--in", msg, "--sig", sig)
    assert code == 0 and "Verified OK" in out


def test_sm2_encryption_with_openssl_both_ways(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    key, pub = tmp_path / "key.pem", tmp_path / "pub.pem"
    run("crypto", "sm2", "keygen", "--out", key, "--pub-out", pub)
    (tmp_path / "p").write_bytes(b"a session key")
    assert (
        run(
            "crypto", "sm2", "encrypt", "--pub", pub, "--in", tmp_path / "p", "--out", tmp_path / "c", "--der"
        )[0]
        == 0
    )
    assert openssl("pkeyutl", "-decrypt", "-inkey", key, "-in", tmp_path / "c").stdout == b"a session key"
    openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", tmp_path / "p", "-out", tmp_path / "c2")
    assert (
        run("crypto", "sm2", "decrypt", "--key", key, "--in", tmp_path / "c2", "--out", tmp_path / "p2")[0]
        == 0
    )
    assert (tmp_path / "p2").read_bytes() == b"a session key"
    # raw C1C3C2 (the default) round trip
    run("crypto", "sm2", "encrypt", "--pub", pub, "--in", tmp_path / "p", "--out", tmp_path / "c3")
    assert (tmp_path / "c3").read_bytes()[0] == 4
    assert (
        run("crypto", "sm2", "decrypt", "--key", key, "--in", tmp_path / "c3", "--out", tmp_path / "p3")[0]
        == 0
    )
    assert (tmp_path / "p3").read_bytes() == b"a session key"


def test_bad_key_file_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    (tmp_path / "m").write_bytes(b"x")
    code, out, err = run(
        "crypto", "sm2", "sign", "--key", tmp_path / "k.pem", "--in", tmp_path / "m", "--out", tmp_path / "s"
    )
    assert code == 2 and "k.pem" in err and "Traceback" not in out + err


def test_cert_show_and_verify(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    from tianmu import gmcrypto
    from tianmu.gmcrypto import x509 as gx

    ca_key = gmcrypto.generate_key()
    ca = gx.issue_certificate(subject="Demo CA", public_key=ca_key.public_key, issuer_key=ca_key, ca=True)
    leaf = gx.issue_certificate(
        subject="alice", public_key=gmcrypto.generate_key().public_key, issuer_key=ca_key, issuer=ca
    )
    (tmp_path / "ca.pem").write_bytes(ca.to_pem())
    (tmp_path / "leaf.pem").write_bytes(leaf.to_pem())
    code, out, _ = run("crypto", "cert", "show", tmp_path / "leaf.pem", "--json")
    shown = __import__("json").loads(out)[0]
    assert code == 0 and shown["subject"] == "CN=alice" and shown["fingerprint_sm3"] == leaf.fingerprint()
    code, out, _ = run("crypto", "cert", "verify", tmp_path / "leaf.pem", "--ca", tmp_path / "ca.pem")
    assert code == 0 and "CN=alice → CN=Demo CA" in out
    other = gmcrypto.generate_key()
    (tmp_path / "other.pem").write_bytes(
        gx.issue_certificate(
            subject="Demo CA", public_key=other.public_key, issuer_key=other, ca=True
        ).to_pem()
    )
    code, _, err = run("crypto", "cert", "verify", tmp_path / "leaf.pem", "--ca", tmp_path / "other.pem")
    assert code == 1 and "verification failed" in err
