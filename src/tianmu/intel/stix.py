"""STIX 2.1 (and 2.0) bundles: indicators with STIX patterns, and the objects that give them context.

Objects are parsed one by one with the `stix2` library, so one malformed object is reported (`file:
objects[i] (id): message`) and the rest of the bundle is kept. Indicator patterns are read with
`stix2-patterns` (the grammar `stix2` validates against). What becomes an indicator for matching:

- `ipv4-addr:value`, `ipv6-addr:value` (`=`, or `ISSUBSET` for a network), `domain-name:value`,
  `url:value`, `email-addr:value`, `file:hashes.'MD5'|'SHA-1'|'SHA-256'|'SHA-512'`, and the HTTP
  `User-Agent` request header of `network-traffic`;
- from a pattern joined by `AND`/`FOLLOWEDBY` (all parts must hold at once), only the file hashes:
  any other part alone would match far more than the pattern means.

`indicates` relationships name the malware, threat actors (intrusion sets) and ATT&CK techniques
(attack patterns with a `mitre-attack` external id) an indicator points at; those objects themselves,
and the relationships, are kept as context objects. Revoked indicators are skipped.

Hostile input: a bundle over `max_document_bytes` or nested deeper than `max_depth` is refused with
the reason (never a RecursionError), as is an object of the bundle that `stix2` cannot parse.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stix2
from stix2patterns.pattern import Pattern

from tianmu.intel.models import FeedResult, IntelEntry
from tianmu.intel.normalize import NormalizeError, normalize
from tianmu.store.knowledge import ImportLimits, LimitError, load_json, read_limited

__all__ = ["CONTEXT_TYPES", "entries_from_objects", "is_stix_bundle", "read_stix_bundle"]

CONTEXT_TYPES = frozenset(
    {"malware", "threat-actor", "intrusion-set", "attack-pattern", "campaign", "tool", "relationship"}
)
_HASH_KEYS = {
    "md5": "md5",
    "sha-1": "sha1",
    "sha1": "sha1",
    "sha-256": "sha256",
    "sha256": "sha256",
    "sha-512": "sha512",
    "sha512": "sha512",
}
_ACTOR_TYPES = ("threat-actor", "intrusion-set", "campaign")


def is_stix_bundle(path: Path) -> bool:
    if path.is_dir() or path.suffix.lower() != ".json":
        return False
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace")
    return '"bundle"' in head and '"type"' in head


def read_stix_bundle(
    path: Path, source: str | None = None, confidence: int = 50, limits: ImportLimits | None = None
) -> FeedResult:
    """A bundle file; the source is `stix:<identity name or file stem>` unless given."""
    limits = limits or ImportLimits()
    try:
        document = load_json(read_limited(path, limits.max_document_bytes, "max_document_bytes"), limits)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, LimitError) as exc:
        line = getattr(exc, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        return FeedResult(source=source or f"stix:{path.stem}", kind="stix", errors=[f"{where}: {exc}"])
    if not isinstance(document, dict) or document.get("type") != "bundle":
        return FeedResult(
            source=source or f"stix:{path.stem}", kind="stix", errors=[f"{path}: not a STIX bundle"]
        )
    objects = document.get("objects") or []
    if not isinstance(objects, list):
        return FeedResult(
            source=source or f"stix:{path.stem}", kind="stix", errors=[f"{path}: `objects` is not a list"]
        )
    return entries_from_objects(objects, source or f"stix:{path.stem}", confidence, str(path))


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _parse(raw: Any) -> Any:
    version = "2.0" if isinstance(raw, dict) and "spec_version" not in raw else "2.1"
    return stix2.parse(raw, allow_custom=True, version=version)


def entries_from_objects(
    objects: Iterable[Any], source: str, confidence: int = 50, origin: str = ""
) -> FeedResult:
    """Indicators and context out of STIX objects (a bundle's list, or a TAXII envelope's)."""
    result = FeedResult(source=source, kind="stix")
    indicators: list[tuple[str, Any]] = []
    by_id: dict[str, Any] = {}
    relations: list[Any] = []
    newest = ""
    for index, raw in enumerate(objects):
        ident = raw.get("id", "?") if isinstance(raw, dict) else "?"
        where = f"{origin}: objects[{index}] ({ident})"
        try:
            obj = _parse(raw)
        except Exception as exc:  # stix2 raises many unrelated classes for bad input
            result.errors.append(f"{where}: {exc.__class__.__name__}: {_first_line(exc)}")
            continue
        modified = str(obj.get("modified", ""))
        newest = max(newest, modified)
        if obj["type"] == "indicator":
            indicators.append((where, obj))
        elif obj["type"] in CONTEXT_TYPES:
            by_id[obj["id"]] = obj
            if obj["type"] == "relationship":
                relations.append(obj)
            result.objects.append(json.loads(obj.serialize()))
    context: dict[str, list[Any]] = {}
    for rel in relations:
        if rel["relationship_type"] == "indicates" and rel["target_ref"] in by_id:
            context.setdefault(rel["source_ref"], []).append(by_id[rel["target_ref"]])
    for where, obj in indicators:
        if obj.get("revoked"):
            result.skipped += 1
            continue
        try:
            found = _pattern_entries(obj, confidence, where)
        except (NormalizeError, ValueError, TypeError) as exc:
            result.errors.append(f"{where}: {_first_line(exc)}")
            continue
        if not found:
            result.skipped += 1
        _add_context(found, obj, context.get(obj["id"], []))
        result.entries.extend(found)
    result.version = newest or None
    return result


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__


def _pattern_entries(obj: Any, default_confidence: int, where: str) -> list[IntelEntry]:
    if obj.get("pattern_type", "stix") != "stix":
        return []
    pattern = obj["pattern"]
    try:
        data = Pattern(pattern).inspect()
    except Exception as exc:  # the ANTLR-based parser raises its own error classes
        raise ValueError(f"cannot parse pattern {pattern!r}: {_first_line(exc)}") from exc
    compound = (
        " AND " in pattern.upper() or "FOLLOWEDBY" in data.observation_ops or "AND" in (data.observation_ops)
    )
    found: list[IntelEntry] = []
    for object_type, comparisons in data.comparisons.items():
        for path, operator, literal in comparisons:
            parsed = _comparison(object_type, path, operator, literal)
            if parsed is None or (compound and parsed[0] not in _HASH_KEYS.values()):
                continue
            kind, value = normalize(*parsed)
            found.append(IntelEntry(type=kind, value=value, origin=where, confidence=default_confidence))
    return found


def _comparison(object_type: str, path: list[Any], operator: str, literal: str) -> tuple[str, str] | None:
    if not (literal.startswith("'") and literal.endswith("'")):
        return None
    value = literal[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    keys = [str(p).lower() for p in path]
    if operator == "ISSUBSET" and object_type in ("ipv4-addr", "ipv6-addr") and keys == ["value"]:
        return "cidr", value
    if operator != "=":
        return None
    if object_type in ("ipv4-addr", "ipv6-addr") and keys == ["value"]:
        return "ip", value
    if object_type == "domain-name" and keys == ["value"]:
        return "domain", value
    if object_type == "url" and keys == ["value"]:
        return "url", value
    if object_type == "email-addr" and keys == ["value"]:
        return "email", value
    if object_type in ("file", "artifact") and len(keys) == 2 and keys[0] == "hashes":
        kind = _HASH_KEYS.get(keys[1])
        return (kind, value) if kind else None
    if object_type == "network-traffic" and keys[-2:] == ["request_header", "user-agent"]:
        return "user-agent", value
    return None


def _attack_id(obj: Any) -> str | None:
    for ref in obj.get("external_references", []) or []:
        if ref.get("source_name") == "mitre-attack" and ref.get("external_id"):
            return str(ref["external_id"]).upper()
    return None


def _add_context(entries: list[IntelEntry], indicator: Any, related: list[Any]) -> None:
    confidence = indicator.get("confidence")
    labels = list(indicator.get("labels", []) or []) + list(indicator.get("indicator_types", []) or [])
    references = [str(r["url"]) for r in indicator.get("external_references", []) or [] if r.get("url")]
    techniques: list[str] = []
    malware: list[str] = []
    actors: list[str] = []
    for phase in indicator.get("kill_chain_phases", []) or []:
        if phase.get("kill_chain_name") == "mitre-attack":
            labels.append(f"tactic:{phase['phase_name']}")
    for obj in related:
        if obj["type"] == "attack-pattern":
            tid = _attack_id(obj)
            if tid:
                techniques.append(tid)
        elif obj["type"] in ("malware", "tool"):
            malware.append(str(obj["name"]))
        elif obj["type"] in _ACTOR_TYPES:
            actors.append(str(obj["name"]))
    valid_from = _time(indicator.get("valid_from"))
    valid_until = _time(indicator.get("valid_until"))
    for entry in entries:
        if confidence is not None:
            entry.confidence = int(confidence)
        entry.valid_from = valid_from
        entry.valid_until = valid_until
        entry.labels = list(dict.fromkeys(labels))
        entry.references = references
        entry.techniques = list(dict.fromkeys(techniques))
        entry.malware = list(dict.fromkeys(malware))
        entry.actors = list(dict.fromkeys(actors))
        entry.description = str(indicator.get("description") or indicator.get("name") or "")
