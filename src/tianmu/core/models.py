"""The nouns of Tianmu (see DESIGN.md): what every capability reads and produces.

These are plain frozen dataclasses, independent of the store, so that engines can be used and tested
without a database. The store maps them to rows; reports render them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "ENTITY_TYPES",
    "Assessment",
    "Asset",
    "AssetKind",
    "Component",
    "Event",
    "Finding",
    "FindingKind",
    "Incident",
    "Indicator",
    "IndicatorType",
    "Location",
    "Service",
    "Severity",
    "TriageStatus",
    "Unresolved",
    "finding_fingerprint",
    "utcnow",
]


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp Tianmu stores is UTC."""
    return datetime.now(UTC)


class Severity(StrEnum):
    """Severity of a finding, ordered from most to least severe."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse; used for sorting and for `--fail-on` thresholds."""
        return _SEVERITY_RANK[self]

    def at_least(self, threshold: Severity) -> bool:
        return self.rank >= threshold.rank

    @classmethod
    def from_cvss_score(cls, score: float | None) -> Severity:
        """Qualitative rating of CVSS v3/v4 (FIRST's table); no score means we cannot tell: medium."""
        if score is None:
            return cls.MEDIUM
        if score >= 9.0:
            return cls.CRITICAL
        if score >= 7.0:
            return cls.HIGH
        if score >= 4.0:
            return cls.MEDIUM
        if score > 0.0:
            return cls.LOW
        return cls.INFO

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Accept the names advisories use (`moderate`, `important`, `informational`...)."""
        key = text.strip().lower()
        aliases = {"moderate": "medium", "important": "high", "informational": "info", "none": "info"}
        key = aliases.get(key, key)
        return cls(key)


_SEVERITY_RANK = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.INFO: 0,
}


class FindingKind(StrEnum):
    VULNERABILITY = "vulnerability"
    MALWARE = "malware"
    DETECTION = "detection"
    INTEL = "intel"
    EXPOSURE = "exposure"
    MISCONFIGURATION = "misconfiguration"


class TriageStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


class AssetKind(StrEnum):
    HOST = "host"
    WEBSITE = "website"
    DOMAIN = "domain"
    REPOSITORY = "repository"
    DIRECTORY = "directory"
    IMAGE = "image"


class IndicatorType(StrEnum):
    IP = "ip"
    CIDR = "cidr"
    DOMAIN = "domain"
    URL = "url"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was read: a file (relative to the assessed root when possible) and a 1-based line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True, slots=True)
class Asset:
    """A thing we protect."""

    name: str
    """Stable name: a path, host name, URL or domain. Unique per tenant and kind: the identity (a path
    asset's is its path resolved through symlinks, so two folders both called `logs` are two assets)."""
    kind: AssetKind
    tenant: str = "default"
    criticality: int = 3
    """1 (lab box) to 5 (crown jewels); feeds the risk score."""
    tags: tuple[str, ...] = ()
    label: str = field(default="", compare=False)
    """What people call a path asset, from what the user gave: the host name for a live system root,
    the repository's remote, the folder's or file's name (`tianmu.road.targets`); empty: the name.
    Not part of the identity: the same path under a new label is the same asset."""

    @property
    def display(self) -> str:
        """The label with the name it stands for (`logs (/srv/app/logs)`), or the name alone."""
        return f"{self.label} ({self.name})" if self.label and self.label != self.name else self.name


@dataclass(frozen=True, slots=True)
class Component:
    """A piece of software found on an asset."""

    name: str
    """The name as its ecosystem writes it (not normalised: normalising is the matcher's job)."""
    version: str
    ecosystem: str
    """OSV ecosystem name: PyPI, npm, Go, crates.io, Packagist, RubyGems, Maven, Debian, Alpine..."""
    purl: str
    location: Location | None = None
    source_name: str | None = None
    """For OS packages: the source package advisories are written against (dpkg `Source:`)."""
    distro_release: str | None = None
    """For OS packages: the distribution release (e.g. `12` for Debian bookworm), when known."""
    direct: bool | None = None
    """True for a dependency the project names itself, False for a transitive one, None if unknown."""
    distro_package: str | None = None
    """For a language package installed by the OS package manager: the OS package that owns it, as
    `Ecosystem/name@version` (e.g. `Debian/python3-cryptography@38.0.4-3+deb12u1`); its advisories are
    the distribution's, with backported fixes."""


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A dependency we saw but cannot pin to one version (e.g. `django>=3` in requirements.txt).

    Reported to the user, never silently dropped: a vulnerability scan over it would be a guess.
    """

    name: str
    ecosystem: str
    requirement: str
    location: Location
    reason: str


@dataclass(frozen=True, slots=True)
class Service:
    """A listening network service on an asset."""

    address: str
    port: int
    transport: str = "tcp"
    service: str | None = None
    product: str | None = None
    version: str | None = None
    cpe: str | None = None
    banner: str | None = None
    tls: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One log record, with Sigma/ECS field names, its raw form, and where it came from."""

    fields: dict[str, Any]
    raw: str
    origin: Location
    timestamp: datetime | None = None
    source_type: str = "generic"


@dataclass(frozen=True, slots=True)
class Indicator:
    """An indicator of compromise."""

    type: IndicatorType
    value: str
    sources: tuple[str, ...] = ()
    confidence: int = 50
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    labels: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()


ENTITY_TYPES = ("ip", "user", "host", "hash", "domain", "url", "process", "file")
"""Entity types that link findings into incidents and traces (see `Finding.evidence`)."""


@dataclass(slots=True)
class Finding:
    """The one output of every engine.

    Evidence conventions shared by every engine, so that reports, correlation and tracing can read any
    finding without knowing the engine that made it:

    - `evidence["path"]` (and `"line"` or `"record"`): where the evidence is, relative to the assessed
      root when possible; `evidence["sha256"]` for a file.
    - `evidence["time"]`: ISO 8601 UTC time of the event the finding rests on (log record time, file
      modification time), when there is one.
    - `evidence["entities"]`: `{type: [values]}` with types from `ENTITY_TYPES` — the source and
      destination IPs, user names, host names, file hashes (sha256), domains, URLs, process images
      and file paths the finding involves. Values are normalised (lower-case domains and hashes).
    - `evidence["fingerprint_extra"]`: what, beyond tenant, asset, kind and rule, makes two sightings
      different problems (e.g. the file path for malware, the source IP for a brute force).
    - `evidence["fingerprint_file"]`: the absolute path of the file a record finding rests on (a log
      line, a sample, the lockfile or package database that declared a vulnerable component; a
      correlation: the sorted list of its events' files), set by the road; it stands
      for the asset in the fingerprint, so the same record is one finding whichever directory above
      it was assessed.

    `fingerprint` identifies the problem, not the sighting: the same flaw in the same component at the same
    place on the same asset has the same fingerprint whenever it is found again, so the store can keep
    its triage status and only move `last_seen`.
    """

    kind: FindingKind
    rule_id: str
    """The advisory, rule or signature that fired (primary id)."""
    title: str
    severity: Severity
    asset: Asset
    score: float | None = None
    """Numeric severity (CVSS base score for vulnerabilities)."""
    summary: str = ""
    component: Component | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    """Kind-specific details (for vulnerabilities: fixed_versions, kev, epss...)."""
    status: TriageStatus = TriageStatus.OPEN
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    @property
    def fingerprint(self) -> str:
        return finding_fingerprint(self)


def finding_fingerprint(finding: Finding) -> str:
    """SHA-256 over what makes a finding the same problem.

    Included: tenant, asset, kind, rule id and, when there is a component, its ecosystem, name, version
    and file. Excluded: severity, score, texts and timestamps, which change when advisories are updated
    without the problem being a different one. The line is left out too: adding a line above a pin must
    not reopen a triaged finding.
    """
    comp = finding.component
    key: dict[str, Any] = {
        "tenant": finding.asset.tenant,
        "asset": [finding.asset.kind.value, finding.asset.name],
        "kind": finding.kind.value,
        "rule": finding.rule_id,
    }
    if "fingerprint_file" in finding.evidence:
        # A record of a file: where the file is, not which directory above it was assessed.
        key["asset"] = ["file", finding.evidence["fingerprint_file"]]
    if comp is not None:
        key["component"] = [
            comp.ecosystem,
            comp.name,
            comp.version,
            # Keyed on the file's absolute place, its path relative to the assessed root is left out.
            comp.location.path if comp.location and "fingerprint_file" not in finding.evidence else None,
        ]
    if "fingerprint_extra" in finding.evidence:
        key["extra"] = finding.evidence["fingerprint_extra"]
    # default=str: an engine's odd extra (bytes, a set) must not make the finding unstorable.
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(slots=True)
class Incident:
    """Findings and events correlated into one story."""

    title: str
    tenant: str = "default"
    severity: Severity = Severity.MEDIUM
    stage: str | None = None
    """Kill-chain stage (ATT&CK tactic) reached."""
    status: TriageStatus = TriageStatus.OPEN
    finding_fingerprints: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    id: str = ""
    """Stable per tenant (`INC-` + 12 hex digits), kept when incidents merge or the store reloads them."""
    assignee: str | None = None
    tactics: list[str] = field(default_factory=list)
    """ATT&CK tactics (short names) reached, in kill-chain order."""
    entities: dict[str, list[str]] = field(default_factory=dict)
    """`{type: [values]}` over `ENTITY_TYPES` (plus `asset`) that tie the findings together."""


@dataclass(slots=True)
class Assessment:
    """One run of `tianmu assess`: what was looked at, what was found, what could not be read."""

    target: str
    asset: Asset
    started: datetime
    finished: datetime | None = None
    components: list[Component] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Inputs that could not be read, as `path:line: message`."""
    files_read: int = 0
    knowledge_bases: list[dict[str, Any]] = field(default_factory=list)
    """`tianmu kb status` rows at the time of the run: which data the verdicts rest on."""
    engines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the engines want the user to know (e.g. `malware: no signatures imported, scan skipped`)."""
    risk: dict[str, Any] | None = None
    """The situation step's risk report (`RiskReport.as_dict()`), with the posture history."""
    incidents: list[Incident] = field(default_factory=list)
    """Incidents the assessment's findings belong to (situation step)."""
