"""Evidence bundles record the audit chain's tip: signed in the manifest, shown by `evidence verify`.

Before, a bundle said nothing of how far the audit chain had gone when it was made, so a log cut back
afterwards could not be held against the evidence already handed over.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.situation import correlate, export_bundle, load_signer, verify_bundle
from tianmu.situation.evidence import MANIFEST, _zip_bytes

from .scenario import scenario_findings, write_scenario_files

TIP = (41, "ab" * 32)


def _export(tmp_path: Path, **kwargs: object) -> tuple[Path, dict[str, object]]:
    root = tmp_path / "target"
    write_scenario_files(root)
    findings = scenario_findings()
    incident = correlate(findings)[0]
    out = tmp_path / "out" / f"{incident.id}.zip"
    manifest = export_bundle(incident, findings, out, load_signer(tmp_path / "home"), roots=[root], **kwargs)  # type: ignore[arg-type]
    return out, manifest


def _manifest(path: Path) -> dict[str, object]:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(MANIFEST))  # type: ignore[no-any-return]


def test_the_signed_manifest_holds_the_tip_and_verify_reports_it(tmp_path: Path) -> None:
    path, manifest = _export(tmp_path, audit_tip=TIP)
    assert manifest["audit_tip"] == {"seq": 41, "hash": "ab" * 32}
    assert _manifest(path)["audit_tip"] == {"seq": 41, "hash": "ab" * 32}
    report = verify_bundle(path)
    assert report.ok, report.problems
    assert report.audit_tip == {"seq": 41, "hash": "ab" * 32}
    assert report.as_dict()["audit_tip"] == {"seq": 41, "hash": "ab" * 32}


def test_the_tip_is_read_when_the_bundle_is_made_and_an_odd_hash_is_not_carried(tmp_path: Path) -> None:
    calls: list[int] = []

    def source() -> tuple[int, str]:
        calls.append(1)
        return (3, "not-hex\r\nX-Evil: 1")

    path, manifest = _export(tmp_path, audit_tip=source)
    assert calls == [1]
    assert manifest["audit_tip"] == {"seq": 3, "hash": "invalid"}
    assert verify_bundle(path).audit_tip == {"seq": 3, "hash": "invalid"}


def test_a_bundle_without_a_tip_still_verifies_and_says_so(tmp_path: Path) -> None:
    path, manifest = _export(tmp_path)
    assert "audit_tip" not in manifest
    report = verify_bundle(path)
    assert report.ok and report.audit_tip is None


def test_a_rewritten_tip_breaks_the_signature(tmp_path: Path) -> None:
    path, _ = _export(tmp_path, audit_tip=TIP)
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    forged = []
    for name, data in members:
        if name == MANIFEST:
            doc = json.loads(data)
            doc["audit_tip"] = {"seq": 5, "hash": "cd" * 32}  # pretend the chain was shorter then
            data = json.dumps(doc, indent=2, ensure_ascii=False).encode()
        forged.append((name, data))
    path.write_bytes(_zip_bytes(forged))
    report = verify_bundle(path)
    assert not report.ok
    assert "the signature does not match the manifest" in report.problems


def test_cli_export_signs_the_current_tip_and_verify_shows_it(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(out_console, "width", 250)
    runner = CliRunner()
    # Correlating is an audited change: the chain has a tip before the export.
    assert runner.invoke(app, ["incidents", "correlate"], env=env).exit_code == 0
    listed = json.loads(runner.invoke(app, ["incidents", "list", "--json"], env=env).stdout)
    key = next(str(r["id"]) for r in listed if r["stage"] == "persistence")
    tip_file = json.loads((Path(env["TIANMU_HOME"]) / "audit-tip.json").read_text())
    root = tmp_path / "target"
    write_scenario_files(root)
    bundle = tmp_path / "bundle.zip"
    result = runner.invoke(app, ["evidence", "export", key, "-o", str(bundle), "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    assert _manifest(bundle)["audit_tip"] == {"seq": tip_file["seq"], "hash": tip_file["hash"]}
    assert tip_file["seq"] >= 1
    shown = f"audit chain at entry {tip_file['seq']} ({tip_file['hash'][:16]})"
    assert shown in result.output
    keyfile = Path(env["TIANMU_HOME"]) / "keys" / "evidence-sm2.pub.pem"
    ok = runner.invoke(app, ["evidence", "verify", str(bundle), "--key", str(keyfile)], env=env)
    assert ok.exit_code == 0 and "verified" in ok.stdout and shown in ok.stdout
    as_json = runner.invoke(app, ["evidence", "verify", str(bundle), "--json"], env=env)
    assert json.loads(as_json.stdout)["audit_tip"]["seq"] == tip_file["seq"]
    data = bytearray(bundle.read_bytes())
    data[200] ^= 0xFF
    bundle.write_bytes(bytes(data))
    failed = runner.invoke(app, ["evidence", "verify", str(bundle), "--key", str(keyfile)], env=env)
    assert failed.exit_code == 1 and "NOT verified" in failed.stdout
