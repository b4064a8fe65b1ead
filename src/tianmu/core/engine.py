"""The one shape of an engine, and what the road hands it.

Every capability turns inputs into findings the same way, so the road (`tianmu.road`) can collect the
inputs once and give each engine its share:

- An engine **declares** its name and `Requirements`: the knowledge bases it reads (`tianmu kb` names),
  the classes of files it wants (`FileClass`), whether it consumes events, and which other inputs it
  takes (components found by the inventory, services, earlier engines' findings, hosts, URLs, domains).
  The road reads the declarations to decide what to collect and in which order to run the engines; a
  job that runs offline can leave out every engine whose requirements say `network`.
- A **batch engine** (`Engine`) gets an `Inputs` and returns an `EngineResult`: findings, located
  errors (`path:line: message`), notes for the user, and what it found for later engines (components,
  services).
- An **event engine** (`EventEngine`) opens an `EventSink` per stream of events; the road parses each
  log once and gives every sink each event in the same pass. A sink's `partial()` is a picklable
  summary of what it saw (findings, correlation sightings), so the road may run sinks in forked workers,
  one per group of files, and the engine `combine`s the partials into its result. The live monitor uses
  the same sinks and calls `partial()` at each checkpoint.

Models: osv-scanner's extractor/enricher `Requirements`, pip-audit's role interfaces. Engines get their
collaborators (the store, loaded rules, the data directory) when the composition root builds them, so
nothing here depends on a floor above `core`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tianmu.core.models import Asset, Component, Event, Finding, Service, Unresolved

__all__ = [
    "CollectedFile",
    "Engine",
    "EngineResult",
    "EventEngine",
    "EventSink",
    "EventStream",
    "FileClass",
    "InputKind",
    "Inputs",
    "JobContext",
    "Progress",
    "Requirements",
]

Progress = Callable[[str], None]
"""Called with a short text (a relative path, a URL) as work advances; drives the progress bar."""


class FileClass(StrEnum):
    """What a file of a target is, judged once by the road's collector (by name; content decides later)."""

    ANY = "any"
    """Every regular file: malware scanning and filename indicators want them all."""
    PACKAGE = "package"
    """Lockfiles, manifests, package databases, SBOMs and binaries with build information."""
    LOG = "log"
    """Files that may be logs; the road parses them once into events for every event engine."""
    ARCHIVE = "archive"
    SOURCE = "source"
    CONFIG = "config"


class InputKind(StrEnum):
    """Inputs other than files: what earlier engines produced, or targets named by the user."""

    COMPONENTS = "components"
    SERVICES = "services"
    FINDINGS = "findings"
    """Findings of the engines that ran before (the hashes, peers and hosts in their evidence)."""
    HOSTS = "hosts"
    URLS = "urls"
    DOMAINS = "domains"


@dataclass(frozen=True, slots=True)
class Requirements:
    """What an engine needs; the road collects exactly the union of its engines' requirements."""

    knowledge: frozenset[str] = frozenset()
    """Knowledge bases read (`vulns`, `malware`, `detect`, `intel`, `attack`): shown when one is empty."""
    files: frozenset[FileClass] = frozenset()
    events: bool = False
    inputs: frozenset[InputKind] = frozenset()
    produces: frozenset[InputKind] = frozenset()
    """Inputs this engine makes for later ones (the inventory makes components): it runs before them."""
    network: bool = False
    """Sends traffic (discovery, website and domain checks)."""


@dataclass(frozen=True, slots=True)
class CollectedFile:
    """One regular file of the target, as the collector saw it during its one walk."""

    path: str
    """Path to open (as walked from the root the user named)."""
    relpath: str
    """Relative to the target root, posix separators; the file's name when the target is one file."""
    size: int
    classes: frozenset[FileClass]


@dataclass(slots=True)
class JobContext:
    """The job an engine runs in: which asset, where the data directory is, who shows progress."""

    asset: Asset
    root: Path | None = None
    """The target root (a directory, or one file); None for targets that are no path (hosts, URLs)."""
    home: Path | None = None
    """The data directory (compiled rule caches, quarantine); None when the caller has none."""
    progress: Progress | None = None


@dataclass(slots=True)
class Inputs:
    """What the road collected for one job, and what earlier engines produced."""

    files: Sequence[CollectedFile] = ()
    components: list[Component] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    """Hosts, URLs or domains named by the user, for engines that take them."""

    def files_of(self, *classes: FileClass) -> list[CollectedFile]:
        """The collected files in any of `classes`, in walk order."""
        wanted = frozenset(classes)
        return [file for file in self.files if file.classes & wanted]


@dataclass(slots=True)
class EngineResult:
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Inputs that could not be read, as `path:line: message` (relative to the target root)."""
    notes: list[str] = field(default_factory=list)
    """What the user should know: a knowledge base never imported, how much was scanned."""
    components: list[Component] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    files_read: int = 0
    consumed: set[str] = field(default_factory=set)
    """Relative paths of files this engine read as its own input (a lockfile's includes as well): they
    are no input of another class (a requirements include is not a log), so no other reader opens them."""

    def extend(self, other: EngineResult) -> None:
        self.findings.extend(other.findings)
        self.errors.extend(other.errors)
        self.notes.extend(other.notes)
        self.components.extend(other.components)
        self.unresolved.extend(other.unresolved)
        self.services.extend(other.services)
        self.files_read += other.files_read
        self.consumed |= other.consumed


@runtime_checkable
class Engine(Protocol):
    """A batch engine: inputs in, findings out."""

    name: str
    requirements: Requirements

    def analyse(self, inputs: Inputs, job: JobContext) -> EngineResult: ...


@dataclass(frozen=True, slots=True)
class EventStream:
    """One stream of events the road parses: a log file, one member of a zip archive, or (live) one
    source such as a syslog listener or a followed file."""

    file: str
    """The file (or source) as given."""
    name: str
    """Display path of the stream: the file, or `archive.zip!member`."""
    format: str
    """The reader's format; `text` for the numbered lines of a text file no reader understands;
    `unknown` for a stream in no format we read and `unreadable` for one that could not be read (both
    without events: their errors come with `EventSink.end`)."""
    generic: bool = False
    """Generic JSON or CSV records found in a folder walk: data rather than a log we know. Engines that
    look for indicators in any data want them; rule engines do not (package.json is no log)."""


class EventSink(Protocol):
    """Events of one pass into one event engine, stream by stream."""

    def begin(self, stream: EventStream) -> bool:
        """Whether this sink wants the stream's events (the road skips streams no sink wants)."""
        ...

    def add(self, event: Event) -> None: ...

    def end(self, stream: EventStream, events: int, errors: Sequence[str]) -> None:
        """After the stream's last event: how many it had, and its malformed records (`path:line: why`)."""
        ...

    def partial(self) -> Any:
        """A picklable summary of what the sink saw since it was opened (or since the last call)."""
        ...


@runtime_checkable
class EventEngine(Protocol):
    """An engine that sees events as the road parses them, once, for every event engine."""

    name: str
    requirements: Requirements

    def open(self, job: JobContext) -> EventSink: ...

    def combine(self, partials: Sequence[Any], job: JobContext) -> EngineResult:
        """The result of a whole pass, from the partials of every sink opened for it (in file order)."""
        ...
