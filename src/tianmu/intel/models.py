"""What the feed readers produce and the matcher reports: intel entries, feed results, hits.

Every reader (STIX, TAXII, MISP, lists, maltrail, signature-base) turns its input into `IntelEntry`
rows of one source, already normalised (see `tianmu.intel.normalize`), and collects what it could not
read as `path:line: message` strings instead of stopping at the first bad row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["FeedResult", "IntelEntry", "IntelRecord", "merge_entries"]


@dataclass(slots=True)
class IntelEntry:
    """One indicator as one source states it."""

    type: str
    """ip, cidr, domain, url, md5, sha1, sha256, sha512, email or user-agent."""
    value: str
    """Canonical value (see `tianmu.intel.normalize`)."""
    confidence: int = 50
    """0–100, the feed's own figure or the source's default."""
    exact: bool = False
    """For domains: match this name only, not its subdomains."""
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    """After this time the indicator no longer matches (expired)."""
    labels: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    """ATT&CK technique ids (T1071, T1059.001)."""
    malware: list[str] = field(default_factory=list)
    actors: list[str] = field(default_factory=list)
    description: str = ""
    references: list[str] = field(default_factory=list)
    origin: str = ""
    """Where the source states it: `file:line`, `file: objects[3]`, a TAXII object id."""

    def merge(self, other: IntelEntry) -> None:
        """Fold a duplicate from the same source into this one (union of context, highest confidence)."""
        self.confidence = max(self.confidence, other.confidence)
        self.exact = self.exact and other.exact
        for name in ("labels", "techniques", "malware", "actors", "references"):
            mine: list[str] = getattr(self, name)
            extra = [v for v in getattr(other, name) if v not in mine]
            if extra:
                # A new list: readers may share one list between many entries (all trails of a file).
                setattr(self, name, mine + extra)
        if other.valid_until is None or (self.valid_until and other.valid_until > self.valid_until):
            self.valid_until = other.valid_until
        if not self.description:
            self.description = other.description


def merge_entries(entries: list[IntelEntry]) -> dict[tuple[str, str], IntelEntry]:
    merged: dict[tuple[str, str], IntelEntry] = {}
    for entry in entries:
        key = (entry.type, entry.value)
        known = merged.get(key)
        if known is None:
            merged[key] = entry
        else:
            known.merge(entry)
    return merged


@dataclass(slots=True)
class FeedResult:
    """What one reader got out of one input."""

    source: str
    kind: str
    """stix, taxii, misp, list, csv, maltrail, signature-base."""
    entries: list[IntelEntry] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    """STIX context objects (malware, threat-actor, attack-pattern, relationship...) kept as they are."""
    errors: list[str] = field(default_factory=list)
    skipped: int = 0
    """Rows read but not indicators for matching (MISP attributes without to_ids, comments...)."""
    version: str | None = None


@dataclass(frozen=True, slots=True)
class IntelRecord:
    """One indicator with every source that states it merged: what `lookup` returns and hits carry."""

    type: str
    value: str
    sources: tuple[str, ...]
    confidence: int
    exact: bool
    valid_from: datetime | None
    valid_until: datetime | None
    labels: tuple[str, ...]
    techniques: tuple[str, ...]
    malware: tuple[str, ...]
    actors: tuple[str, ...]
    description: str
    references: tuple[str, ...]
    origins: tuple[str, ...]

    def expired(self, now: datetime) -> bool:
        return self.valid_until is not None and self.valid_until <= now

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "value": self.value,
            "sources": list(self.sources),
            "confidence": self.confidence,
            "exact": self.exact,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "labels": list(self.labels),
            "techniques": list(self.techniques),
            "malware": list(self.malware),
            "actors": list(self.actors),
            "description": self.description,
            "references": list(self.references),
            "origins": list(self.origins),
        }
