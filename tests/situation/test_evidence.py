"""Evidence bundles: what goes in, that they verify, and that any changed byte fails verification."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tianmu.core.models import Asset, AssetKind, Finding, FindingKind, Severity
from tianmu.gmcrypto import digest
from tianmu.road.evidence import quarantine_lookup
from tianmu.situation import correlate, export_bundle, load_signer, verify_bundle
from tianmu.situation.evidence import MANIFEST, SIGNATURE, EvidenceSigner, _zip_bytes, folder_quarantine

from .scenario import AUTH_LOG, MALWARE_SHA256, scenario_findings, write_scenario_files


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "target"
    write_scenario_files(root)
    findings = scenario_findings()
    incident = correlate(findings)[0]
    home = tmp_path / "home"
    out = tmp_path / "out" / f"{incident.id}.zip"
    export_bundle(incident, findings, out, load_signer(home), roots=[root])
    return out, home


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def test_bundle_holds_records_samples_and_a_signed_sm3_manifest(bundle: tuple[Path, Path]) -> None:
    path, home = bundle
    members = dict(_members(path))
    lines = AUTH_LOG.splitlines(keepends=True)
    names = list(members)
    assert names[:2] == ["incident.json", "findings.json"] and names[-2:] == [MANIFEST, SIGNATURE]
    assert f"samples/{MALWARE_SHA256}.bin" in names
    log_members = {n: d for n, d in members.items() if n.startswith("records/") and n.endswith(".log")}
    # intel hit line 1, brute force line 4, login line 5, useradd line 6: the raw lines, byte for byte.
    assert sorted(log_members.values()) == sorted(lines[i].encode() for i in (0, 3, 4, 5))
    assert any(n.endswith(".event.txt") for n in members)  # the login's kept raw event
    sample = members[f"samples/{MALWARE_SHA256}.bin"]
    assert sample.startswith(b"\x7fELF")
    manifest = json.loads(members[MANIFEST])
    assert manifest["digest"] == "SM3" and manifest["incident"] == json.loads(members["incident.json"])["id"]
    for entry in manifest["files"]:
        assert entry["sm3"] == digest(members[entry["name"]]).hex()
    assert manifest["missing"] == []
    signature = json.loads(members[SIGNATURE])
    assert signature["algorithm"] == "SM2"
    assert (home / "keys" / "evidence-sm2.key.sealed").stat().st_mode & 0o777 == 0o600
    assert not (home / "keys" / "evidence-sm2.pem").exists()  # no private key in the clear

    report = verify_bundle(path, trusted_key=(home / "keys" / "evidence-sm2.pub.pem").read_bytes())
    assert report.ok, report.problems
    assert report.algorithm == "SM2" and report.files == len(members) - 2
    incident = json.loads(members["incident.json"])
    assert incident["stage"] == "persistence" and len(incident["timeline"]) == 5


def test_any_changed_byte_in_any_member_fails(bundle: tuple[Path, Path]) -> None:
    path, _home = bundle
    members = _members(path)
    for index, (name, data) in enumerate(members):
        for position in {0, len(data) // 2, len(data) - 1}:
            changed = bytearray(data)
            changed[position] ^= 0x01
            forged = list(members)
            forged[index] = (name, bytes(changed))
            # Rebuilt cleanly (valid CRCs), so only the manifest and signature can catch it.
            path.write_bytes(_zip_bytes(forged))
            report = verify_bundle(path)
            assert not report.ok, (name, position)


def test_any_changed_byte_of_the_archive_fails(bundle: tuple[Path, Path]) -> None:
    path, _home = bundle
    original = path.read_bytes()
    assert verify_bundle(path).ok
    positions = sorted(set(range(0, len(original), 11)) | {len(original) - 1})
    for position in positions:
        changed = bytearray(original)
        changed[position] ^= 0x20
        path.write_bytes(bytes(changed))
        assert not verify_bundle(path).ok, position
    path.write_bytes(original)
    assert verify_bundle(path).ok


def test_a_re_signed_forgery_fails_against_the_trusted_key(bundle: tuple[Path, Path], tmp_path: Path) -> None:
    path, home = bundle
    members = dict(_members(path))
    members["incident.json"] = members["incident.json"].replace(b"persistence", b"discovery")
    manifest = json.loads(members[MANIFEST])
    for entry in manifest["files"]:
        entry["sm3"] = digest(members[entry["name"]]).hex()
        entry["size"] = len(members[entry["name"]])
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    mallory = load_signer(tmp_path / "mallory")
    signature = json.loads(members[SIGNATURE])
    signature["public_key"] = mallory.public_pem.decode()
    import base64

    signature["signature"] = base64.b64encode(mallory.sign(manifest_bytes)).decode()
    members[MANIFEST] = manifest_bytes
    members[SIGNATURE] = json.dumps(signature, indent=2).encode()
    path.write_bytes(_zip_bytes(list(members.items())))
    assert verify_bundle(path).ok  # self-consistent: that is why the key must be pinned
    pinned = verify_bundle(path, trusted_key=(home / "keys" / "evidence-sm2.pub.pem").read_bytes())
    assert not pinned.ok and pinned.problems == ["signed with a key other than the trusted one"]


def test_ed25519_signatures_verify_and_report_what_is_missing(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    signer = EvidenceSigner(
        "Ed25519",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    findings = scenario_findings()
    incident = correlate(findings)[0]
    out = tmp_path / "b.zip"
    manifest = export_bundle(incident, findings, out, signer)  # no roots: the raw files are not found
    reasons = {m["reason"] for m in manifest["missing"]}
    assert "var/log/auth.log: not found under the given roots" in reasons
    assert f"sample {MALWARE_SHA256}: neither quarantined nor present with that hash" in reasons
    report = verify_bundle(out, trusted_key=signer.public_pem)
    assert report.ok and report.algorithm == "Ed25519" and len(report.missing) == 5
    data = bytearray(out.read_bytes())
    data[-5] ^= 1
    out.write_bytes(bytes(data))
    assert not verify_bundle(out).ok


def test_quarantined_sample_and_evtx_record(tmp_path: Path, shared_data: Path) -> None:
    evtx = next(iter(sorted((shared_data / "evtx").rglob("*.evtx"))))
    host = Asset("win10", AssetKind.HOST)
    detection = Finding(
        FindingKind.DETECTION,
        "sigma:x",
        "Sysmon event",
        Severity.HIGH,
        host,
        evidence={"path": str(evtx), "record": 1, "time": "2026-11-20T01:00:00+00:00"},
    )
    malware = Finding(
        FindingKind.MALWARE,
        "yara:y",
        "sample",
        Severity.HIGH,
        host,
        evidence={
            "sha256": "ab" * 32,
            "time": "2026-11-20T01:01:00+00:00",
            "entities": {"hash": ["ab" * 32]},
        },
    )
    quarantine = tmp_path / "quarantine"
    quarantine.mkdir()
    (quarantine / f"{'ab' * 32}.sm4").write_bytes(b"sealed bytes")
    incident = correlate([detection, malware])[0]
    out = tmp_path / "b.zip"
    manifest = export_bundle(
        incident,
        [detection, malware],
        out,
        load_signer(tmp_path / "h"),
        quarantine=folder_quarantine(quarantine),
    )
    assert manifest["missing"] == []
    members = dict(_members(out))
    [xml_name] = [n for n in members if n.endswith(".xml")]
    assert "evtx-record-1" in xml_name and b"<Event" in members[xml_name]
    assert members[f"samples/{'ab' * 32}.quarantined"] == b"sealed bytes"
    assert verify_bundle(out).ok
    bad = tmp_path / "not-a-zip.zip"
    bad.write_bytes(b"hello")
    report = verify_bundle(bad)
    assert not report.ok and report.problems[0].startswith("not a readable zip archive")


def test_a_sample_in_tianmus_quarantine_travels_sealed(tmp_path: Path) -> None:
    from tianmu.malware.quarantine import quarantine_file

    root = tmp_path / "target"
    write_scenario_files(root)
    home = tmp_path / "home"
    sample = root / "tmp" / ".x" / "kworker"
    raw = sample.read_bytes()
    item = quarantine_file(home, sample, reason="yara:Linux_Trojan_Mirai")
    assert not sample.exists() and item.sha256 == MALWARE_SHA256
    findings = scenario_findings()
    incident = correlate(findings)[0]
    out = tmp_path / "b.zip"
    manifest = export_bundle(
        incident, findings, out, load_signer(home), roots=[root], quarantine=quarantine_lookup(home)
    )
    members = dict(_members(out))
    sealed = members[f"samples/{MALWARE_SHA256}.tmq"]
    assert raw not in sealed and len(sealed) > len(raw)  # SM4-GCM sealed, never the live bytes
    assert json.loads(members[f"samples/{MALWARE_SHA256}.quarantine.json"])["sha256"] == MALWARE_SHA256
    assert manifest["missing"] == []
    assert verify_bundle(out).ok


def test_a_sample_inside_nested_zip_archives_is_extracted(tmp_path: Path) -> None:
    import hashlib
    import io

    payload = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("eicar.com", payload)
    outer = tmp_path / "target" / "inbox" / "mail.zip"
    outer.parent.mkdir(parents=True)
    with zipfile.ZipFile(outer, "w") as archive:
        archive.writestr("attachments/archive.zip", inner.getvalue())
    sha = hashlib.sha256(payload).hexdigest()
    host = Asset("mail01", AssetKind.HOST)
    finding = Finding(
        FindingKind.MALWARE,
        "EICAR_Test_File",
        "EICAR",
        Severity.LOW,
        host,
        evidence={
            "path": "inbox/mail.zip!attachments/archive.zip!eicar.com",
            "time": "2026-11-20T01:00:00+00:00",
            "entities": {"hash": [sha]},
        },
    )
    incident = correlate([finding])[0]
    out = tmp_path / "b.zip"
    manifest = export_bundle(
        incident, [finding], out, load_signer(tmp_path / "h"), roots=[tmp_path / "target"]
    )
    assert manifest["missing"] == []
    assert dict(_members(out))[f"samples/{sha}.bin"] == payload
