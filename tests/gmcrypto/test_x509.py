"""SM2 certificates: issue, parse, verify chains (and refuse bad ones); openssl agrees."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tianmu import gmcrypto
from tianmu.gmcrypto import x509 as gx
from tianmu.gmcrypto.errors import KeyFormatError


@pytest.fixture(scope="module")
def pki() -> dict[str, object]:
    root_key = gmcrypto.generate_key()
    root = gx.issue_certificate(
        subject="Tianmu Root", public_key=root_key.public_key, issuer_key=root_key, ca=True
    )
    sub_key = gmcrypto.generate_key()
    sub = gx.issue_certificate(
        subject="Tianmu Tenant CA", public_key=sub_key.public_key, issuer_key=root_key, issuer=root, ca=True
    )
    user_key = gmcrypto.generate_key()
    leaf = gx.issue_certificate(
        subject="alice", public_key=user_key.public_key, issuer_key=sub_key, issuer=sub, days=30
    )
    return {
        "root": root,
        "root_key": root_key,
        "sub": sub,
        "sub_key": sub_key,
        "leaf": leaf,
        "user_key": user_key,
    }


def test_issued_certificate_fields(pki: dict) -> None:  # type: ignore[type-arg]
    leaf, sub = pki["leaf"], pki["sub"]
    assert leaf.common_name == "alice" and leaf.issuer == "CN=Tianmu Tenant CA"
    assert leaf.cert.signature_algorithm_oid == gx.SM3_WITH_SM2
    assert leaf.public_key == pki["user_key"].public_key
    assert not leaf.is_ca and sub.is_ca
    assert leaf.not_after - leaf.not_before == dt.timedelta(days=30)
    again = gx.load_certificate(leaf.to_pem())
    assert again.der == leaf.der and again.fingerprint() == leaf.fingerprint()


def test_read_public_key_from_key_files_and_certificates(tmp_path: Path, pki: dict) -> None:  # type: ignore[type-arg]
    key = pki["user_key"]
    files = {
        "public.pem": key.public_key.to_pem(),
        "private.pem": key.to_pem(),
        "leaf.pem": pki["leaf"].to_pem(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert gx.read_public_key(tmp_path / name) == key.public_key, name
    with pytest.raises(KeyFormatError, match="cannot read"):
        gx.read_public_key(tmp_path / "missing.pem")


def test_chain_verifies_through_intermediate(pki: dict) -> None:  # type: ignore[type-arg]
    path = gx.verify_chain(pki["leaf"], [pki["sub"]], [pki["root"]])
    assert [c.common_name for c in path] == ["alice", "Tianmu Tenant CA", "Tianmu Root"]
    assert gx.verify_chain(pki["leaf"], [], [pki["sub"]])[-1] is pki["sub"]


def test_chain_refuses_foreign_ca(pki: dict) -> None:  # type: ignore[type-arg]
    other_key = gmcrypto.generate_key()
    # Same name, different key: only the signature tells them apart.
    impostor = gx.issue_certificate(
        subject="Tianmu Tenant CA", public_key=other_key.public_key, issuer_key=other_key, ca=True
    )
    with pytest.raises(gx.ChainError, match="does not verify"):
        gx.verify_chain(pki["leaf"], [], [impostor])
    stranger = gx.issue_certificate(
        subject="Elsewhere CA", public_key=other_key.public_key, issuer_key=other_key, ca=True
    )
    with pytest.raises(gx.ChainError, match="not a trusted CA"):
        gx.verify_chain(pki["leaf"], [pki["sub"]], [stranger])


def test_chain_refuses_expired_and_not_yet_valid(pki: dict) -> None:  # type: ignore[type-arg]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=60)
    with pytest.raises(gx.ChainError, match="expired"):
        gx.verify_chain(pki["leaf"], [pki["sub"]], [pki["root"]], at=later)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    with pytest.raises(gx.ChainError, match="not yet valid"):
        gx.verify_chain(pki["leaf"], [pki["sub"]], [pki["root"]], at=earlier)


def test_chain_refuses_leaf_acting_as_ca(pki: dict) -> None:  # type: ignore[type-arg]
    mallory_key = gmcrypto.generate_key()
    forged = gx.issue_certificate(
        subject="mallory", public_key=mallory_key.public_key, issuer_key=pki["user_key"], issuer=pki["leaf"]
    )
    with pytest.raises(gx.ChainError, match="not a CA"):
        gx.verify_chain(forged, [pki["leaf"], pki["sub"]], [pki["root"]])


def test_openssl_accepts_tianmu_chain(tmp_path: Path, pki: dict, openssl) -> None:  # type: ignore[no-untyped-def,type-arg]
    for name in ("root", "sub", "leaf"):
        (tmp_path / f"{name}.pem").write_bytes(pki[name].to_pem())
    # OpenSSL 3.0's `verify` applies -vfyopt distid only to the certificate it is asked about, so each link
    # of the chain is checked on its own (the intermediate as a trust anchor for the leaf).
    distid = ("-vfyopt", "distid:1234567812345678")
    out = openssl("verify", *distid, "-CAfile", tmp_path / "root.pem", tmp_path / "sub.pem")
    assert out.stdout.strip().endswith(b"OK")
    out = openssl("verify", *distid, "-partial_chain", "-CAfile", tmp_path / "sub.pem", tmp_path / "leaf.pem")
    assert out.stdout.strip().endswith(b"OK")
    wrong = openssl(
        "verify",
        *distid,
        "-partial_chain",
        "-CAfile",
        tmp_path / "root.pem",
        tmp_path / "leaf.pem",
        check=False,
    )
    assert wrong.returncode != 0


def test_path_length_constraint(pki: dict) -> None:  # type: ignore[type-arg]
    key = gmcrypto.generate_key()
    tight = gx.issue_certificate(
        subject="Tight Root", public_key=key.public_key, issuer_key=key, ca=True, path_length=0
    )
    mid_key = gmcrypto.generate_key()
    mid = gx.issue_certificate(
        subject="Mid", public_key=mid_key.public_key, issuer_key=key, issuer=tight, ca=True
    )
    leaf = gx.issue_certificate(
        subject="bob", public_key=gmcrypto.generate_key().public_key, issuer_key=mid_key, issuer=mid
    )
    with pytest.raises(gx.ChainError, match="pathLenConstraint"):
        gx.verify_chain(leaf, [mid], [tight])


def test_tianmu_parses_openssl_certificate(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    openssl("genpkey", "-algorithm", "SM2", "-out", tmp_path / "k.pem")
    openssl(
        "req", "-x509", "-new", "-key", tmp_path / "k.pem", "-sm3", "-sigopt", "distid:1234567812345678",
        "-subj", "/CN=openssl ca", "-days", "2", "-out", tmp_path / "ca.pem",
    )  # fmt: skip
    cert = gx.load_certificate((tmp_path / "ca.pem").read_bytes())
    assert cert.common_name == "openssl ca" and cert.is_ca
    assert gx.verify_chain(cert, [], [cert]) == [cert]
    assert cert.signed_by(cert)
    # a leaf signed by openssl (x509 -req with the default ID) chains to it
    openssl("genpkey", "-algorithm", "SM2", "-out", tmp_path / "u.pem")
    openssl("req", "-new", "-key", tmp_path / "u.pem", "-subj", "/CN=carol", "-out", tmp_path / "u.csr",
            "-sm3", "-sigopt", "distid:1234567812345678")  # fmt: skip
    openssl(
        "x509", "-req", "-in", tmp_path / "u.csr", "-CA", tmp_path / "ca.pem", "-CAkey", tmp_path / "k.pem",
        "-sm3", "-sigopt", "distid:1234567812345678", "-vfyopt", "distid:1234567812345678",
        "-days", "1", "-out", tmp_path / "u.crt",
    )  # fmt: skip
    leaf = gx.load_certificate((tmp_path / "u.crt").read_bytes())
    assert [c.common_name for c in gx.verify_chain(leaf, [], [cert])] == ["carol", "openssl ca"]


def test_non_sm2_certificate_is_refused(tmp_path: Path, openssl) -> None:  # type: ignore[no-untyped-def]
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
        tmp_path / "k.pem", "-subj", "/CN=p256", "-days", "1", "-out", tmp_path / "c.pem",
    )  # fmt: skip
    with pytest.raises(KeyFormatError, match="SM3withSM2"):
        gx.load_certificate((tmp_path / "c.pem").read_bytes(), source="c.pem")
