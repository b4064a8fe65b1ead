"""Read-only queries over the stored ATT&CK tables: technique ids → names and tactics, tactic order.

The intel capability imports the enterprise bundle into `attack_techniques` and `attack_tactics`
(`tianmu.intel.attack`); the situation step, reports and the intel matcher only read them. The reading
lives here, on the store floor, so that the situation step can place findings on the kill chain without
importing a capability.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from tianmu.core.models import Finding
from tianmu.store.bulk import select_in
from tianmu.store.database import Store
from tianmu.store.schema import attack_tactics, attack_techniques

__all__ = ["annotate_findings", "tactic_order", "technique_info"]


def technique_info(store: Store, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """ATT&CK names and tactics of the given technique ids (unknown ids are left out).

    `{"T1059.001": {"name": "PowerShell", "full_name": "Command and Scripting Interpreter: PowerShell",
    "tactics": ["Execution"], "tactic_ids": ["TA0002"], "tactic_shortnames": ["execution"], "url": ...}}`.
    Returns `{}` when the ATT&CK base was never imported.
    """
    wanted = {i.strip().upper() for i in ids if i and i.strip()}
    if not wanted:
        return {}
    parents = {i.split(".")[0] for i in wanted if "." in i}
    with store.connect() as conn:
        rows = select_in(
            conn,
            [
                attack_techniques.c.id,
                attack_techniques.c.name,
                attack_techniques.c.tactics,
                attack_techniques.c.url,
            ],
            attack_techniques.c.id,
            wanted | parents,
        )
        if not rows:
            return {}
        tactics = {r.shortname: r for r in conn.execute(select(attack_tactics)).all()}
    names = {r.id: r.name for r in rows}
    info: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.id not in wanted:
            continue
        parent = row.id.split(".")[0] if "." in row.id else None
        shortnames = sorted(row.tactics or [], key=lambda s: tactics[s].position if s in tactics else 99)
        info[row.id] = {
            "name": row.name,
            "full_name": f"{names[parent]}: {row.name}" if parent and parent in names else row.name,
            "tactics": [tactics[s].name if s in tactics else s for s in shortnames],
            "tactic_ids": [tactics[s].id for s in shortnames if s in tactics],
            "tactic_shortnames": shortnames,
            "tactic_positions": [tactics[s].position for s in shortnames if s in tactics],
            "url": row.url,
        }
    return info


def tactic_order(store: Store) -> list[dict[str, Any]]:
    """The tactics in kill-chain order: `[{"shortname", "id", "name"}]` (empty without ATT&CK)."""
    with store.connect() as conn:
        rows = conn.execute(select(attack_tactics).order_by(attack_tactics.c.position)).all()
    return [{"shortname": r.shortname, "id": r.id, "name": r.name} for r in rows]


def annotate_findings(store: Store, findings: Iterable[Finding]) -> None:
    """Put ATT&CK names and tactics into `finding.data["attack"]` of every finding with technique ids.

    `[{"id", "name", "full_name", "tactics", "tactic_ids", "tactic_shortnames", "tactic_positions",
    "url"}]`, in the finding's technique order; unknown ids are left out. Reports read it to show
    names and group by tactic; nothing is added when the ATT&CK base was never imported.
    """
    findings = list(findings)
    info = technique_info(store, {t for f in findings for t in f.techniques})
    if not info:
        return
    for finding in findings:
        known = [t.upper() for t in finding.techniques if t.upper() in info]
        if known:
            finding.data["attack"] = [{"id": t, **info[t]} for t in dict.fromkeys(known)]
