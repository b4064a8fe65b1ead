"""MISP feeds: a folder with `manifest.json` and one `<uuid>.json` per event (MISP's feed export).

Each event's attributes (and those of its objects) with `to_ids` set become indicators; attributes
without it are context in MISP's own terms ("not for detection") and are counted as skipped. The event
`info` is the description, its tags are labels; `misp-galaxy:threat-actor`, `misp-galaxy:malpedia` /
`misp-galaxy:malware`-like tags and `misp-galaxy:mitre-attack-pattern` tags name actors, malware and
ATT&CK techniques. Confidence is the source default, raised to the event's threat level
(1 high → 85, 2 medium → 65) when that is higher.

Hostile input: an event file over `max_record_bytes` or nested deeper than `max_depth`, an event,
object or attribute that is not a JSON object, and a bad timestamp are each reported (file, where,
reason) and passed over; the rest of the feed is read.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tianmu.intel.models import FeedResult, IntelEntry
from tianmu.intel.normalize import NormalizeError, normalize
from tianmu.store.knowledge import ImportLimits, load_json, read_limited

__all__ = ["is_misp_feed", "read_misp_feed"]

# MISP attribute type → our type; composite types (`domain|ip`) yield each part.
_TYPES: dict[str, tuple[str, ...]] = {
    "ip-src": ("ip",),
    "ip-dst": ("ip",),
    "ip-src|port": ("ip", ""),
    "ip-dst|port": ("ip", ""),
    "domain": ("domain",),
    "hostname": ("domain",),
    "domain|ip": ("domain", "ip"),
    "hostname|port": ("domain", ""),
    "url": ("url",),
    "uri": ("url",),
    "md5": ("md5",),
    "sha1": ("sha1",),
    "sha256": ("sha256",),
    "sha512": ("sha512",),
    "filename|md5": ("", "md5"),
    "filename|sha1": ("", "sha1"),
    "filename|sha256": ("", "sha256"),
    "email": ("email",),
    "email-src": ("email",),
    "email-dst": ("email",),
    "user-agent": ("user-agent",),
}
_THREAT_LEVEL_CONFIDENCE = {"1": 85, "2": 65}
_EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_TECHNIQUE = re.compile(r"\bT\d{4}(?:\.\d{3})?\b")


def is_misp_feed(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()


def _load(file: Path, limits: ImportLimits) -> Any:
    return load_json(read_limited(file, limits.max_record_bytes), limits)


def read_misp_feed(
    path: Path, source: str | None = None, confidence: int = 50, limits: ImportLimits | None = None
) -> FeedResult:
    limits = limits or ImportLimits()
    result = FeedResult(source=source or f"misp:{path.resolve().name}", kind="misp")
    manifest_path = path / "manifest.json"
    try:
        manifest = _load(manifest_path, limits)
        if not isinstance(manifest, dict):
            raise ValueError("expected an object of event uuid → event summary")
    except (OSError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        result.errors.append(f"{manifest_path}{f':{line}' if line else ''}: {exc}")
        return result
    newest = 0
    for uuid in sorted(manifest):
        if not _EVENT_NAME.fullmatch(uuid):
            # The manifest names files in this folder: `../../x` must not read anything outside it.
            result.errors.append(f"{manifest_path}: event {uuid[:80]!r} is not a plain event uuid, skipped")
            continue
        event_path = path / f"{uuid}.json"
        try:
            document = _load(event_path, limits)
            event = document["Event"]
            if not isinstance(event, dict):
                raise TypeError("`Event` is not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:  # LimitError is a ValueError
            line = getattr(exc, "lineno", None)
            result.errors.append(f"{event_path}{f':{line}' if line else ''}: cannot read event: {exc}")
            continue
        stamp = str(event.get("timestamp") or 0)
        if stamp.isdigit() and len(stamp) <= 12:  # seconds; a longer number is no date
            newest = max(newest, int(stamp))
        else:
            result.errors.append(f"{event_path}: Event.timestamp {stamp[:40]!r} is not a Unix time")
        _read_event(event, event_path, confidence, result)
    if newest:
        result.version = datetime.fromtimestamp(newest, UTC).isoformat()
    return result


def _list(holder: dict[str, Any], key: str) -> list[Any]:
    """`holder[key]` when it is a list; anything else (a string, an object) holds no items."""
    value = holder.get(key)
    return value if isinstance(value, list) else []


def _tag_names(tags: Any) -> list[str]:
    items = tags if isinstance(tags, list) else []
    return [str(t.get("name")) for t in items if isinstance(t, dict) and t.get("name")]


def _galaxy_value(tag: str) -> str:
    return tag.split("=", 1)[1].strip().strip('"') if "=" in tag else tag


def _read_event(event: dict[str, Any], event_path: Path, default: int, result: FeedResult) -> None:
    tags = _tag_names(event.get("Tag"))
    confidence = max(default, _THREAT_LEVEL_CONFIDENCE.get(str(event.get("threat_level_id")), 0))
    actors = [_galaxy_value(t) for t in tags if t.startswith("misp-galaxy:threat-actor")]
    malware = [
        _galaxy_value(t)
        for t in tags
        if t.startswith(("misp-galaxy:malpedia", "misp-galaxy:ransomware", "misp-galaxy:tool"))
    ]
    techniques = [m for t in tags if "attack-pattern" in t for m in _TECHNIQUE.findall(t)]
    labels = [t for t in tags if not t.startswith("misp-galaxy:")]
    attributes: list[tuple[str, Any]] = [
        (f"Attribute[{i}]", a) for i, a in enumerate(_list(event, "Attribute"))
    ]
    for oi, obj in enumerate(_list(event, "Object")):
        if not isinstance(obj, dict):
            result.errors.append(f"{event_path}: Object[{oi}]: not an object ({type(obj).__name__}), skipped")
            continue
        attributes += [(f"Object[{oi}].Attribute[{i}]", a) for i, a in enumerate(_list(obj, "Attribute"))]
    for where, attribute in attributes:
        origin = f"{event_path}: {where}"
        if not isinstance(attribute, dict):
            result.errors.append(f"{origin}: not an object ({type(attribute).__name__}), skipped")
            continue
        if not attribute.get("to_ids"):
            result.skipped += 1
            continue
        kinds = _TYPES.get(str(attribute.get("type")))
        value = str(attribute.get("value") or "")
        if kinds is None:
            result.skipped += 1
            continue
        parts = value.split("|") if len(kinds) > 1 else [value]
        if len(parts) != len(kinds):
            result.errors.append(
                f"{origin}: {attribute.get('type')} value {value!r} has not {len(kinds)} parts"
            )
            continue
        for kind, part in zip(kinds, parts, strict=True):
            if not kind:
                continue
            try:
                itype, canonical = normalize(kind, part)
            except NormalizeError as exc:
                result.errors.append(f"{origin}: {exc}")
                continue
            attribute_tags = _tag_names(attribute.get("Tag"))
            result.entries.append(
                IntelEntry(
                    type=itype,
                    value=canonical,
                    confidence=confidence,
                    labels=labels + [t for t in attribute_tags if t not in labels],
                    techniques=list(techniques),
                    malware=list(malware),
                    actors=list(actors),
                    description=str(attribute.get("comment") or event.get("info") or ""),
                    origin=origin,
                )
            )
