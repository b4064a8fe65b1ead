"""MITRE ATT&CK: technique ids → names and tactics, from the enterprise bundle (`enterprise-attack.json`).

The bundle is 45 MB of STIX 2.0 JSON with 24,771 objects, of which only 835 attack patterns and 14
tactics matter here; it is read with `json` and filtered, because building `stix2` objects for every
relationship and analytic would take minutes for nothing. Revoked techniques are left out; deprecated
ones are kept (old findings and feeds still name them) and marked.

Reading the stored tables back (`technique_info`, `tactic_order`) is a store query
(`tianmu.store.attack`), so that the situation step and reports need not import this capability; the
names are re-exported here for the intel capability's own callers.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from tianmu.core.errors import KnowledgeBaseError
from tianmu.store.attack import tactic_order, technique_info
from tianmu.store.bulk import insert_rows
from tianmu.store.database import Store
from tianmu.store.schema import attack_tactics, attack_techniques

__all__ = [
    "AttackData",
    "is_attack_bundle",
    "read_attack_bundle",
    "save_attack",
    "tactic_order",
    "technique_info",
]


def _open_text(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def is_attack_bundle(path: Path) -> bool:
    """An ATT&CK bundle: a STIX bundle whose first kilobytes name MITRE's ATT&CK kill chain or tactics."""
    name = path.name.lower()
    if path.is_dir() or not (name.endswith(".json") or name.endswith(".json.gz")):
        return False
    try:
        if path.read_bytes()[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as handle:
                head = handle.read(1 << 16)
        else:
            with path.open("rb") as handle:
                head = handle.read(1 << 16)
    except OSError:
        return False
    text = head.decode("utf-8", errors="replace")
    return '"bundle"' in text and ("x_mitre_" in text or "x-mitre-" in text)


class AttackData:
    """Techniques and tactics read from one bundle."""

    def __init__(self) -> None:
        self.techniques: list[dict[str, Any]] = []
        self.tactics: list[dict[str, Any]] = []
        self.version: str | None = None
        self.errors: list[str] = []


def _external_id(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    for ref in obj.get("external_references") or []:
        if ref.get("source_name") == "mitre-attack" and ref.get("external_id"):
            return str(ref["external_id"]).upper(), ref.get("url")
    return None, None


def read_attack_bundle(path: Path) -> AttackData:
    try:
        document = json.loads(_open_text(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise KnowledgeBaseError(
            f"{path}{f':{line}' if line else ''}: not a readable ATT&CK bundle: {exc}"
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
        raise KnowledgeBaseError(f"{path}: not a STIX bundle (no `objects` list)")
    data = AttackData()
    matrix_order: list[str] = []
    tactics_by_ref: dict[str, dict[str, Any]] = {}
    for index, obj in enumerate(document["objects"]):
        if not isinstance(obj, dict):
            data.errors.append(f"{path}: objects[{index}]: not an object")
            continue
        kind = obj.get("type")
        if kind == "x-mitre-matrix":
            matrix_order = list(obj.get("tactic_refs") or [])
        elif kind == "x-mitre-tactic" and not obj.get("revoked"):
            tid, _url = _external_id(obj)
            if tid and obj.get("x_mitre_shortname"):
                tactics_by_ref[obj["id"]] = {
                    "shortname": obj["x_mitre_shortname"],
                    "id": tid,
                    "name": obj["name"],
                }
        if isinstance(obj.get("modified"), str):
            # The bundle names no release; the newest change dates it (as `kb status` shows versions).
            data.version = max(data.version or "", obj["modified"][:10])
        if kind == "attack-pattern" and not obj.get("revoked"):
            tid, url = _external_id(obj)
            if not tid:
                data.errors.append(f"{path}: objects[{index}] ({obj.get('id')}): no mitre-attack external id")
                continue
            phases = [
                p["phase_name"]
                for p in obj.get("kill_chain_phases") or []
                if p.get("kill_chain_name") == "mitre-attack"
            ]
            data.techniques.append(
                {
                    "id": tid,
                    "name": str(obj.get("name", tid)),
                    "tactics": phases,
                    "parent_id": tid.split(".")[0] if "." in tid else None,
                    "url": url,
                    "deprecated": bool(obj.get("x_mitre_deprecated")),
                }
            )
    ordered = [tactics_by_ref[ref] for ref in matrix_order if ref in tactics_by_ref]
    ordered += [t for ref, t in sorted(tactics_by_ref.items()) if ref not in matrix_order]
    data.tactics = [{**t, "position": i} for i, t in enumerate(ordered)]
    if not data.techniques:
        raise KnowledgeBaseError(f"{path}: no ATT&CK technique (attack-pattern with a mitre-attack id) found")
    return data


def save_attack(store: Store, data: AttackData) -> None:
    """Replace the stored techniques and tactics (ATT&CK releases are whole; there is one matrix)."""
    with store.begin() as conn:
        conn.execute(delete(attack_techniques))
        conn.execute(delete(attack_tactics))
        # Duplicate ids would break the primary key; the last definition of an id wins.
        unique = {row["id"]: row for row in data.techniques}
        insert_rows(conn, attack_techniques, list(unique.values()))
        insert_rows(conn, attack_tactics, data.tactics)
