"""Evidence bundles: one zip per incident, with a manifest of SM3 digests and a signature over it.

A bundle holds the incident, its findings, the raw records they rest on (log lines, EVTX records as
XML, the event a detection kept) and file samples (the quarantined copy when there is one — still
SM4-sealed, with its index entry — else the file itself when its SHA-256 still matches), plus

- `manifest.json`: every other member's name, size and SM3 digest, the incident id, what could not
  be collected and why, and the audit chain's tip when the bundle was made (`audit_tip`: seq and hash);
- `signature.json`: an SM2 signature (GB/T 32918, via `tianmu.gmcrypto`) over the exact manifest bytes
  and the signer's public key; Ed25519 (via `cryptography`) when SM2 is unavailable on the machine.

The zip is written deterministically (members stored uncompressed, fixed timestamps and attributes), so
`verify_bundle` can rebuild the archive from its members and require the very same bytes: *any* changed
byte fails — in a member, the manifest, the signature or the zip headers. A bundle proves who signed it
only if the verifier pins the public key (`trusted_key`): an attacker can re-sign a forged bundle with
a key of their own, so `tianmu evidence verify --key` (with the public key the installation writes,
`tianmu.situation.evidencekeys`) is what an investigator uses.

The audit tip is signed with the rest of the manifest: a bundle records how far the platform's audit
chain had gone when it was made, so an investigator holding it can tell a later log that was cut back
before that entry. The tip belongs to identity, which the situation floor may not import; the caller
(the CLI) gives it as a plain (seq, hash) or a callable read just before signing, as alerts take it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evtx import PyEvtxParser

from tianmu.core.errors import InputError
from tianmu.core.models import Finding, Incident, utcnow
from tianmu.core.serialize import finding_to_dict
from tianmu.gmcrypto import digest
from tianmu.situation.evidencekeys import EvidenceSigner, load_signer, public_key_der, verify_signature

__all__ = [
    "AuditTipInput",
    "BundleReport",
    "EvidenceSigner",
    "QuarantineLookup",
    "export_bundle",
    "folder_quarantine",
    "load_signer",
    "verify_bundle",
]

FORMAT = "tianmu-evidence/1"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
MAX_SAMPLE = 64 * 1024 * 1024
"""Larger files are named in the manifest's `missing` list instead of copied."""
_EPOCH = (1980, 1, 1, 0, 0, 0)
_HASH = re.compile(r"[0-9a-f]{64}")

AuditTipInput = tuple[int, str] | Callable[[], tuple[int, str]]
"""The audit chain's (seq, hash), or what reads it (`tianmu.identity.audittip.exported_tip` of the
data directory, bound by the CLI)."""


QuarantineLookup = Callable[[str], Sequence[tuple[str, Path]]]
"""A sample's SHA-256 → the bundle members of its quarantined copy, as (name in the bundle, file to copy);
empty when it is not quarantined. The quarantine belongs to the malware capability, so the caller that
composes both (`tianmu.road.evidence`) supplies it; `folder_quarantine` is the plain-folder kind."""


def _sm3(data: bytes) -> str:
    return digest(data).hex()


def _tip_record(tip: AuditTipInput) -> dict[str, Any]:
    seq, entry_hash = tip() if callable(tip) else tip
    # The tip file can be edited by whoever holds the data directory: an odd hash is signed as
    # "invalid" rather than carried into the manifest as if it were one.
    return {"seq": int(seq), "hash": entry_hash if _HASH.fullmatch(str(entry_hash)) else "invalid"}


def _read_tip(value: object) -> dict[str, Any] | None:
    """The manifest's `audit_tip` as written by `export_bundle`, or None when it is not of that shape."""
    if not isinstance(value, dict) or set(value) != {"seq", "hash"}:
        return None
    seq, entry_hash = value["seq"], value["hash"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or not isinstance(entry_hash, str):
        return None
    if entry_hash != "invalid" and not _HASH.fullmatch(entry_hash):
        return None
    return {"seq": seq, "hash": entry_hash}


# --- writing --------------------------------------------------------------------------------------------


def _zip_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    """The canonical archive of these members: stored, fixed time and attributes, in the given order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _resolve(path: str, finding: Finding, roots: Sequence[Path]) -> Path | None:
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    bases = list(roots)
    if finding.asset.kind.value in ("directory", "repository"):
        bases.append(Path(finding.asset.name))
    for base in bases:
        full = base / candidate
        if full.is_file():
            return full
    return None


def _line(path: Path, number: int) -> bytes | None:
    with path.open("rb") as handle:
        for index, raw in enumerate(handle, start=1):
            if index == number:
                return raw
    return None


def _evtx_record(path: Path, record: int) -> bytes | None:
    for item in PyEvtxParser(str(path)).records():
        if item is not None and int(item["event_record_id"]) == record:
            return str(item["data"]).encode()
    return None


def folder_quarantine(folder: Path) -> QuarantineLookup:
    """Samples kept in a plain folder under names containing their SHA-256 (each carried as it lies)."""

    def lookup(sha256: str) -> list[tuple[str, Path]]:
        if not folder.is_dir():
            return []
        for candidate in sorted(folder.rglob(f"*{sha256}*")):
            if candidate.is_file():
                return [(f"samples/{sha256}.quarantined", candidate)]
        return []

    return lookup


def _sample_hash(finding: Finding) -> str | None:
    """The SHA-256 of the file a finding is about: `evidence.sha256`, or for a malware or intel finding
    on a file, its one hash entity."""
    value = finding.evidence.get("sha256")
    if isinstance(value, str) and len(value) == 64:
        return value.lower()
    if finding.kind.value in ("malware", "intel") and finding.evidence.get("path"):
        entities = finding.evidence.get("entities")
        hashes = entities.get("hash") if isinstance(entities, dict) else None
        if (
            isinstance(hashes, list)
            and len(hashes) == 1
            and isinstance(hashes[0], str)
            and len(hashes[0]) == 64
        ):
            return hashes[0].lower()
    return None


def _sample_bytes(path_text: str, finding: Finding, roots: Sequence[Path], sha256: str) -> bytes | None:
    """The file's bytes when it is still there with that hash; `a.zip!b/c.zip!x` (the malware scanner's
    notation for archive members) is read through the nested zip archives."""
    if not path_text:
        return None
    outer, *inner = path_text.split("!")
    source = _resolve(outer, finding, roots)
    if source is None:
        return None
    try:
        if source.stat().st_size > MAX_SAMPLE:
            return None
        data = source.read_bytes()
        for member in inner:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                info = archive.getinfo(member)
                if info.file_size > MAX_SAMPLE:
                    return None
                data = archive.read(info)
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, NotImplementedError, zlib.error):
        # Not a zip we can open (tar, 7z, encrypted): the sample is listed as missing instead.
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _collect(
    finding: Finding, index: int, roots: Sequence[Path], quarantine: QuarantineLookup | None
) -> tuple[list[tuple[str, bytes]], list[dict[str, str]]]:
    members: list[tuple[str, bytes]] = []
    missing: list[dict[str, str]] = []
    fp = finding.fingerprint[:12]
    evidence = finding.evidence
    prefix = f"records/{index:03d}-{fp}"

    def miss(reason: str) -> None:
        missing.append({"fingerprint": finding.fingerprint, "reason": reason})

    path_text = evidence.get("path")
    source = _resolve(str(path_text), finding, roots) if path_text else None
    try:
        if (
            source is not None
            and isinstance(evidence.get("record"), int)
            and source.suffix.lower() == ".evtx"
        ):
            data = _evtx_record(source, int(evidence["record"]))
            if data is None:
                miss(f"{path_text}: record {evidence['record']} not found")
            else:
                members.append((f"{prefix}.evtx-record-{evidence['record']}.xml", data))
        elif source is not None and isinstance(evidence.get("line"), int):
            data = _line(source, int(evidence["line"]))
            if data is None:
                miss(f"{path_text}: line {evidence['line']} no longer exists")
            else:
                members.append((f"{prefix}.line-{evidence['line']}.log", data))
        elif path_text and (evidence.get("line") or evidence.get("record")):
            miss(f"{path_text}: not found under the given roots")
    except OSError as exc:
        miss(f"{path_text}: {exc.strerror}")
    event = finding.data.get("event") if isinstance(finding.data.get("event"), dict) else None
    raw = finding.data.get("raw") or (event or {}).get("raw")
    if isinstance(raw, str) and raw:
        members.append((f"{prefix}.event.txt", raw.encode()))
    sha256 = _sample_hash(finding)
    if sha256 is not None:
        sealed = list(quarantine(sha256)) if quarantine is not None else []
        for name, sample in sealed:
            if sample.stat().st_size > MAX_SAMPLE:
                miss(f"sample {sha256}: larger than {MAX_SAMPLE} bytes")
            else:
                members.append((name, sample.read_bytes()))
        if not sealed:
            data = _sample_bytes(str(path_text or ""), finding, roots, sha256)
            if data is None:
                miss(f"sample {sha256}: neither quarantined nor present with that hash")
            else:
                members.append((f"samples/{sha256}.bin", data))
    return members, missing


def export_bundle(
    incident: Incident,
    findings: Iterable[Finding],
    output: Path,
    signer: EvidenceSigner,
    *,
    roots: Sequence[Path] = (),
    quarantine: QuarantineLookup | None = None,
    audit_tip: AuditTipInput | None = None,
) -> dict[str, Any]:
    """Write the incident's bundle to `output`; returns the manifest.

    `findings` are the incident's findings (others are ignored); `roots` are folders relative evidence
    paths are resolved against (besides a directory asset's own root); `quarantine` finds the
    quarantined copy of a sample, carried instead of the file itself; `audit_tip` is the audit chain's
    tip to sign into the manifest (read last, just before signing, when it is a callable).
    """
    wanted = set(incident.finding_fingerprints)
    chosen = [f for f in findings if f.fingerprint in wanted]
    order = {fp: i for i, fp in enumerate(incident.finding_fingerprints)}
    chosen.sort(key=lambda f: order[f.fingerprint])
    members: list[tuple[str, bytes]] = []
    missing: list[dict[str, str]] = []
    incident_doc = {
        "id": incident.id,
        "tenant": incident.tenant,
        "title": incident.title,
        "severity": incident.severity.value,
        "stage": incident.stage,
        "status": incident.status.value,
        "assignee": incident.assignee,
        "tactics": incident.tactics,
        "assets": incident.assets,
        "sources": incident.sources,
        "entities": incident.entities,
        "first_seen": incident.first_seen.isoformat() if incident.first_seen else None,
        "last_seen": incident.last_seen.isoformat() if incident.last_seen else None,
        "timeline": incident.timeline,
    }
    members.append(("incident.json", json.dumps(incident_doc, indent=2, ensure_ascii=False).encode()))
    members.append(
        (
            "findings.json",
            json.dumps([finding_to_dict(f) for f in chosen], indent=2, ensure_ascii=False).encode(),
        )
    )
    seen_names: set[str] = set()
    for index, finding in enumerate(chosen, start=1):
        got, lost = _collect(finding, index, roots, quarantine)
        for name, data in got:
            if name not in seen_names:
                seen_names.add(name)
                members.append((name, data))
        missing.extend(lost)
    for fp in sorted(wanted - {f.fingerprint for f in chosen}):
        missing.append({"fingerprint": fp, "reason": "finding not in the store any more"})
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "incident": incident.id,
        "tenant": incident.tenant,
        "created": utcnow().isoformat(),
        "digest": "SM3",
        "files": [{"name": name, "size": len(data), "sm3": _sm3(data)} for name, data in members],
        "missing": missing,
    }
    if audit_tip is not None:
        manifest["audit_tip"] = _tip_record(audit_tip)
    manifest_bytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    signature = {
        "algorithm": signer.algorithm,
        "public_key": signer.public_pem.decode(),
        "key_id": _sm3(signer.public_pem)[:16],
        "signature": base64.b64encode(signer.sign(manifest_bytes)).decode(),
    }
    members.append((MANIFEST, manifest_bytes))
    members.append((SIGNATURE, json.dumps(signature, indent=2).encode()))
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(_zip_bytes(members))
    except OSError as exc:
        raise InputError(f"cannot write the bundle: {exc.strerror}", str(output)) from exc
    return manifest


# --- verifying ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class BundleReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    algorithm: str | None = None
    key_id: str | None = None
    incident: str | None = None
    files: int = 0
    missing: list[dict[str, str]] = field(default_factory=list)
    audit_tip: dict[str, Any] | None = None
    """The audit chain's tip (seq, hash) signed into the manifest; None in a bundle made without one."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "algorithm": self.algorithm,
            "key_id": self.key_id,
            "incident": self.incident,
            "files": self.files,
            "missing": self.missing,
            "audit_tip": self.audit_tip,
        }


def verify_bundle(path: Path, *, trusted_key: bytes | None = None) -> BundleReport:
    """Check signature, digests, completeness and byte-exact form; problems are listed, not raised."""
    report = BundleReport(ok=False)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the bundle: {exc.strerror}", str(path)) from exc
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    # A damaged archive can fail in any of zipfile's ways (a flipped flag bit claims encryption or
    # patched data): each one means "not the bundle that was signed".
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        ValueError,
        EOFError,
        KeyError,
        NotImplementedError,
        RuntimeError,
        zlib.error,
    ) as exc:
        report.problems.append(f"not a readable zip archive: {exc}")
        return report
    contents = dict(members)
    if len(contents) != len(members):
        report.problems.append("duplicate member names")
    if MANIFEST not in contents or SIGNATURE not in contents:
        report.problems.append(f"{MANIFEST} or {SIGNATURE} is missing")
        return report
    try:
        manifest = json.loads(contents[MANIFEST])
        signature = json.loads(contents[SIGNATURE])
        algorithm = str(signature["algorithm"])
        public_pem = str(signature["public_key"]).encode()
        raw_signature = base64.b64decode(signature["signature"], validate=True)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        report.problems.append(f"manifest or signature unreadable: {exc}")
        return report
    report.algorithm, report.key_id = algorithm, str(signature.get("key_id", ""))
    report.incident = manifest.get("incident") if isinstance(manifest, dict) else None
    report.missing = list(manifest.get("missing", [])) if isinstance(manifest, dict) else []
    if isinstance(manifest, dict) and "audit_tip" in manifest:
        report.audit_tip = _read_tip(manifest["audit_tip"])
        if report.audit_tip is None:
            report.problems.append("the manifest's audit_tip is not a (seq, hash) pair")
    if not verify_signature(algorithm, public_pem, contents[MANIFEST], raw_signature):
        report.problems.append("the signature does not match the manifest")
    if trusted_key is not None:
        # Keys are compared as keys (the trusted copy may be DER or a private key file of ours), and
        # whatever algorithm the bundle claims: a foreign key of another kind is simply not ours.
        mine = public_key_der(trusted_key, "trusted key")
        if mine is None:
            report.problems.append("the trusted key is not an SM2 or Ed25519 key")
        elif mine != public_key_der(public_pem, "bundle"):
            report.problems.append("signed with a key other than the trusted one")
    listed: set[str] = set()
    for entry in files if isinstance(files, list) else []:
        name = str(entry.get("name"))
        listed.add(name)
        data = contents.get(name)
        if data is None:
            report.problems.append(f"{name}: listed in the manifest but absent")
        elif len(data) != entry.get("size") or _sm3(data) != entry.get("sm3"):
            report.problems.append(f"{name}: content differs from its SM3 digest in the manifest")
    for name in contents:
        if name not in listed and name not in (MANIFEST, SIGNATURE):
            report.problems.append(f"{name}: not listed in the manifest")
    if _zip_bytes(members) != blob:
        report.problems.append("the archive is not byte-for-byte the one Tianmu wrote (headers changed)")
    report.files = len(listed)
    report.ok = not report.problems
    return report
