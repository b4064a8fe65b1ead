"""Evidence bundles re-signed by someone else: a key of another algorithm, a label that lies about the
key, a `--key` that is no key. Each is a report (exit 1 at the command line), never a crash."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.core.errors import ConfigError
from tianmu.situation import correlate, export_bundle, load_signer, verify_bundle
from tianmu.situation.evidence import MANIFEST, SIGNATURE, _zip_bytes

from .scenario import scenario_findings, write_scenario_files


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "target"
    write_scenario_files(root)
    findings = scenario_findings()
    home = tmp_path / "home"
    out = tmp_path / "bundle.zip"
    export_bundle(correlate(findings)[0], findings, out, load_signer(home), roots=[root])
    return out, home / "keys" / "evidence-sm2.pub.pem"


def _re_sign(path: Path, algorithm: str, public_pem: bytes, signature: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    record = json.loads(members[SIGNATURE])
    record.update(
        algorithm=algorithm, public_key=public_pem.decode(), signature=base64.b64encode(signature).decode()
    )
    members[SIGNATURE] = json.dumps(record, indent=2).encode()
    path.write_bytes(_zip_bytes(list(members.items())))


def _manifest(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(MANIFEST)


def _ed25519() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public


def test_re_signed_with_ed25519_is_a_foreign_key(bundle: tuple[Path, Path]) -> None:
    path, trusted = bundle
    mallory, public = _ed25519()
    _re_sign(path, "Ed25519", public, mallory.sign(_manifest(path)))
    assert verify_bundle(path).ok  # self-consistent
    report = verify_bundle(path, trusted_key=trusted.read_bytes())
    assert report.problems == ["signed with a key other than the trusted one"]
    own = load_signer(trusted.parent.parent)
    assert verify_bundle(path, trusted_key=own.private_pem).problems == report.problems  # a private key too


def test_the_label_lies_about_the_key(bundle: tuple[Path, Path]) -> None:
    path, trusted = bundle
    with zipfile.ZipFile(path) as archive:
        record = json.loads(archive.read(SIGNATURE))
    # The genuine SM2 key and signature, labelled Ed25519: the signature cannot verify under that label.
    _re_sign(path, "Ed25519", record["public_key"].encode(), base64.b64decode(record["signature"]))
    report = verify_bundle(path, trusted_key=trusted.read_bytes())
    assert report.problems == ["the signature does not match the manifest"]


def test_a_trusted_key_that_is_no_key(bundle: tuple[Path, Path]) -> None:
    path, _trusted = bundle
    report = verify_bundle(path, trusted_key=b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert report.problems == ["the trusted key is not an SM2 or Ed25519 key"]


def test_cli_verify_exits_1_not_2(bundle: tuple[Path, Path]) -> None:
    path, trusted = bundle
    mallory, public = _ed25519()
    _re_sign(path, "Ed25519", public, mallory.sign(_manifest(path)))
    result = CliRunner().invoke(app, ["evidence", "verify", str(path), "--key", str(trusted), "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["problems"] == ["signed with a key other than the trusted one"]


def test_the_evidence_key_is_sealed_and_an_old_plain_one_is_sealed_on_first_use(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = load_signer(home)
    keys = home / "keys"
    sealed = keys / "evidence-sm2.key.sealed"
    assert b"PRIVATE KEY" not in sealed.read_bytes() and sealed.stat().st_mode & 0o777 == 0o600
    assert (keys / "evidence-sm2.pub.pem").read_bytes() == old.public_pem
    # An installation from before sealing: the plain PKCS#8 file is adopted, sealed and removed.
    sealed.unlink()
    (keys / "evidence-sm2.pem").write_bytes(old.private_pem)
    again = load_signer(home)
    assert again.public_pem == old.public_pem and sealed.exists()
    assert not (keys / "evidence-sm2.pem").exists()
    # A sealed key edited on disk does not open (and is not silently replaced by a new key).
    sealed.write_bytes(sealed.read_bytes()[:-1] + bytes([sealed.read_bytes()[-1] ^ 1]))
    with pytest.raises(ConfigError, match="cannot unseal"):
        load_signer(home)
