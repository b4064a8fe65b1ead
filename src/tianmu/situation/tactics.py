"""ATT&CK Enterprise tactics in kill-chain order, and which tactics a finding shows.

The order is a fact of the ATT&CK Enterprise matrix (the `x_mitre_tactic_refs` of its matrix object):
reconnaissance first, impact last. Correlation uses it to place findings on the kill chain and to name
an incident's stage: the furthest tactic its evidence reaches.

A finding's tactics come, in order of trust, from

1. ATT&CK tactic tags in its data (`data["tags"]`, `data["rule"]["tags"]`: Sigma rules carry
   `attack.persistence`, `attack.credential_access`),
2. the ATT&CK annotation the intel capability adds (`data["attack"]`, with each technique's tactics),
3. its techniques mapped through a resolver the caller passes in: usually `store_technique_resolver`,
   over the ATT&CK tables the intel capability imported (read through `tianmu.store.attack`).

A technique that belongs to several tactics (T1078 Valid Accounts is initial access, persistence,
privilege escalation and defense evasion) counts only as the earliest of them when nothing else says
which: the stage must not claim more progress than the evidence proves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tianmu.core.models import Finding
from tianmu.store.attack import technique_info
from tianmu.store.database import Store

__all__ = [
    "TACTICS",
    "TACTIC_NAMES",
    "TechniqueResolver",
    "finding_tactics",
    "normalise_tactic",
    "store_technique_resolver",
    "tactic_index",
]

TACTICS: tuple[str, ...] = (
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
)
"""ATT&CK Enterprise tactic short names, in kill-chain order."""

TACTIC_NAMES: dict[str, str] = {
    "reconnaissance": "Reconnaissance",
    "resource-development": "Resource Development",
    "initial-access": "Initial Access",
    "execution": "Execution",
    "persistence": "Persistence",
    "privilege-escalation": "Privilege Escalation",
    "defense-evasion": "Defense Evasion",
    "credential-access": "Credential Access",
    "discovery": "Discovery",
    "lateral-movement": "Lateral Movement",
    "collection": "Collection",
    "command-and-control": "Command and Control",
    "exfiltration": "Exfiltration",
    "impact": "Impact",
}

_INDEX = {name: i for i, name in enumerate(TACTICS)}
_TECHNIQUE = re.compile(r"^t\d{4}(?:\.\d{3})?$", re.IGNORECASE)

TechniqueResolver = Callable[[str], Sequence[str]]
"""Technique id (`T1110`, `T1110.001`) → its tactics' short names; empty when unknown."""


def normalise_tactic(text: str) -> str | None:
    """`attack.credential_access`, `Credential Access`, `credential-access` → `credential-access`."""
    key = text.strip().lower()
    if key.startswith("attack."):
        key = key[len("attack.") :]
    key = key.replace("_", "-").replace(" ", "-")
    return key if key in _INDEX else None


def tactic_index(tactic: str) -> int:
    """Position on the kill chain (0 = reconnaissance); unknown tactics sort last."""
    return _INDEX.get(tactic, len(TACTICS))


def _tags(data: Mapping[str, Any]) -> Iterable[str]:
    # Detection engines keep the rule's tags at `data["tags"]` or inside `data["rule"]`; intel hits keep
    # an indicator's ATT&CK labels at `data["tactics"]`. Read all of them, ignore non-strings.
    for holder in (data, data.get("rule"), data.get("indicator")):
        if not isinstance(holder, Mapping):
            continue
        for key in ("tags", "tactics", "labels"):
            values = holder.get(key)
            if isinstance(values, str):
                values = [values]
            if isinstance(values, list | tuple):
                yield from (v for v in values if isinstance(v, str))


def _techniques(finding: Finding) -> list[str]:
    found = [t.upper() for t in finding.techniques if _TECHNIQUE.match(t)]
    for tag in _tags(finding.data):
        key = tag.lower().removeprefix("attack.")
        if _TECHNIQUE.match(key):
            found.append(key.upper())
    return list(dict.fromkeys(found))


def _annotated(data: Mapping[str, Any]) -> Iterable[str]:
    """Tactics the intel capability wrote into `data["attack"]` (one entry per technique, with its
    `tactic_shortnames`); the earliest tactic of each technique, as for a resolver."""
    entries = data.get("attack")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("tactic_shortnames"), list):
            known = [
                t for t in (normalise_tactic(str(x)) for x in entry["tactic_shortnames"]) if t is not None
            ]
            if known:
                yield min(known, key=tactic_index)


def finding_tactics(finding: Finding, resolver: TechniqueResolver | None = None) -> list[str]:
    """The tactics the finding shows, in kill-chain order (see the module docstring for the rules)."""
    tactics = {t for t in (normalise_tactic(tag) for tag in _tags(finding.data)) if t is not None}
    if not tactics:
        tactics = set(_annotated(finding.data))
    if not tactics and resolver is not None:
        for technique in _techniques(finding):
            mapped = [t for t in (normalise_tactic(x) for x in resolver(technique)) if t is not None]
            if not mapped and "." in technique:
                parent = technique.split(".", 1)[0]
                mapped = [t for t in (normalise_tactic(x) for x in resolver(parent)) if t is not None]
            if mapped:
                tactics.add(min(mapped, key=tactic_index))
    return sorted(tactics, key=tactic_index)


def store_technique_resolver(store: Store) -> TechniqueResolver:
    """A resolver over the ATT&CK tables in the store (`tianmu.store.attack.technique_info`).

    It answers nothing (every technique unknown) when the ATT&CK base was never imported. Lookups are
    cached for the resolver's lifetime: an incident replays the same few techniques.
    """
    cache: dict[str, list[str]] = {}

    def resolve(technique: str) -> list[str]:
        key = technique.upper()
        if key not in cache:
            info = technique_info(store, [key]).get(key, {})
            cache[key] = [t for t in info.get("tactic_shortnames", []) if isinstance(t, str)]
        return cache[key]

    return resolve
