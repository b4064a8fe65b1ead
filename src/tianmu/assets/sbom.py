"""SBOM inventory: CycloneDX JSON and SPDX 2.x JSON, read through each component's Package URL.

SBOM file names are generic (`bom.json`), so after the name match the scanner lets these extractors
look at the first bytes: only documents that declare themselves CycloneDX or SPDX are read.

Both are read as a stream of parser events (`_jsonstream`, ijson), never as a whole document: a
150 MB SBOM of 1.5 million components used to cost 1.5 GB for the document alone, now memory is what
the components kept cost. `SbomLimits` bounds that too: past `max_components` the rest are counted,
not read, and the file says so. CycloneDX keeps its components in any order of keys, so components
seen before `"bomFormat"` wait for it (bounded by the same limit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.assets._jsonstream import MAX_DEPTH, Events, JsonEvents, members, skip, value_of
from tianmu.assets.interface import Extracted, Extractor
from tianmu.assets.purl import component_from_purl
from tianmu.core.errors import InputError, ParseError
from tianmu.core.models import Location, Unresolved

__all__ = ["CycloneDxExtractor", "SbomLimits", "SpdxExtractor", "component_from_purl"]

_SNIFF = 64 * 1024
# Component types that are software packages; an operating system or a plain file without a purl
# is not a missed dependency.
_PACKAGE_TYPES = {"library", "framework", "application", None}
_SCALARS = (str, int, float, bool)
_END = ("end", None)  # never reached: the parser ends a damaged stream with an error first


@dataclass(frozen=True, slots=True)
class SbomLimits:
    """What one SBOM may cost; each limit hit is a located warning, and what was read is kept."""

    max_components: int = 500_000
    """Components (SPDX: packages) read from one SBOM; the rest are counted and reported, not read."""
    max_nesting: int = 64
    """Levels of nested CycloneDX `components` read; deeper lists are reported, not read."""
    max_depth: int = MAX_DEPTH
    """Nesting of JSON objects and arrays; a deeper document is a located error."""


def _sbom_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".cdx.json", ".spdx.json", ".bom.json", ".sbom.json")) or (
        lower.endswith(".json") and (lower.startswith(("sbom", "bom")) or lower in ("bom.json",))
    )


@dataclass(slots=True)
class _Run:
    """One document being read: its stream, the count against the limit, what waits for the format."""

    stream: JsonEvents
    limits: SbomLimits
    seen: int = 0
    """Components (packages) met so far, read or not."""
    too_deep: int = 0
    """Nested component lists left unread for their depth."""
    confirmed: bool = False
    """The document has declared its format; until then, results wait in `pending`."""
    pending: list[Extracted] = field(default_factory=list)

    @property
    def display(self) -> str:
        return self.stream.display

    def keep(self) -> bool:
        """Count one more component; True while it is within the limit (read it)."""
        self.seen += 1
        return self.seen <= self.limits.max_components

    def out(self, items: Iterable[Extracted]) -> Iterator[Extracted]:
        if self.confirmed:
            yield from items
        else:
            self.pending.extend(items)

    def confirm(self) -> Iterator[Extracted]:
        self.confirmed = True
        yield from self.pending
        self.pending.clear()

    def warnings(self, noun: str) -> Iterator[InputError]:
        limit = self.limits.max_components
        if self.seen > limit:
            yield InputError(
                f"{self.seen:,} {noun}, only the first {limit:,} read (limit max_components)", self.display
            )
        if self.too_deep:
            yield InputError(
                f"{self.too_deep:,} component list(s) nested deeper than {self.limits.max_nesting} "
                "levels not read (limit max_nesting)",
                self.display,
            )


def _unresolved(name: object, version: object, display: str, line: int | None) -> Unresolved:
    text = str(name)
    version_text = "" if version is None else str(version)
    return Unresolved(
        text, "", f"{text}@{version_text}", Location(display, line), "no package URL in the SBOM"
    )


class CycloneDxExtractor(Extractor):
    name = "cyclonedx-json"
    ecosystem = ""
    sniff_bytes = _SNIFF

    def __init__(self, limits: SbomLimits | None = None) -> None:
        self.limits = limits or SbomLimits()

    def matches(self, relpath: Path) -> bool:
        return _sbom_name(relpath.name)

    def accepts(self, head: bytes) -> bool:
        return re.search(rb'"bomFormat"\s*:\s*"CycloneDX"', head) is not None

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        stream = JsonEvents(path, display_path, max_depth=self.limits.max_depth)
        run = _Run(stream, self.limits)
        events = iter(stream)
        if value_of(events)[0] != "start_map":
            raise ParseError("not a CycloneDX JSON document", display_path, 1)
        for key in members(events):
            event, value = value_of(events)
            if key == "bomFormat":
                if value != "CycloneDX":
                    raise ParseError("not a CycloneDX JSON document", display_path, 1)
                yield from run.confirm()
            elif key == "components" and event == "start_array":
                yield from run.out(self._components(events, run, depth=0))
            else:
                skip(events, event)  # metadata.component is the SBOM's subject, not a dependency
        if not run.confirmed:
            raise ParseError("not a CycloneDX JSON document", display_path, 1)
        yield from run.warnings("components")

    def _components(self, events: Events, run: _Run, depth: int) -> Iterator[Extracted]:
        """The items of a `components` array just opened, each followed by its nested components."""
        for event, _value in events:
            if event == "end_array":
                return
            if event == "start_map":
                yield from self._component(events, run, depth)
            else:
                skip(events, event)

    def _component(self, events: Events, run: _Run, depth: int) -> list[Extracted]:
        keep = run.keep()
        stream = run.stream
        fields: dict[str, object] = {}
        purl_line: int | None = None
        name_at = 0
        children: list[Extracted] = []
        # The hottest loop of a large SBOM: the object's members read straight off the events.
        for kind, key in events:
            if kind != "map_key":
                break  # end_map
            event, value = next(events, _END)
            if key == "components" and event == "start_array":
                if depth + 1 > run.limits.max_nesting:
                    run.too_deep += 1
                    skip(events, event)
                else:
                    # Nested results follow their parent, whichever key came first in the object.
                    children.extend(self._components(events, run, depth + 1))
            elif event == "start_map" or event == "start_array":
                skip(events, event)
            elif keep and key in ("purl", "name", "version", "type"):
                fields[key] = value
                if key == "purl" and isinstance(value, str):
                    purl_line = stream.line_of(key, value)
                elif key == "name":
                    name_at = stream.mark()  # its line is looked for only if there is no purl
        if not keep:
            return children
        purl, name = fields.get("purl"), fields.get("name")
        if isinstance(purl, str) and purl:
            where = Location(run.display, purl_line)
            return [component_from_purl(purl, where, fields.get("version")), *children]
        if fields.get("type") in _PACKAGE_TYPES and name and isinstance(name, _SCALARS):
            line = stream.line_of("name", name, since=name_at) if isinstance(name, str) else None
            return [_unresolved(name, fields.get("version"), run.display, line), *children]
        return children


class SpdxExtractor(Extractor):
    name = "spdx-json"
    ecosystem = ""
    sniff_bytes = _SNIFF

    def __init__(self, limits: SbomLimits | None = None) -> None:
        self.limits = limits or SbomLimits()

    def matches(self, relpath: Path) -> bool:
        return _sbom_name(relpath.name)

    def accepts(self, head: bytes) -> bool:
        return re.search(rb'"spdxVersion"\s*:\s*"SPDX-2', head) is not None

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        stream = JsonEvents(path, display_path, max_depth=self.limits.max_depth)
        run = _Run(stream, self.limits)
        events = iter(stream)
        if value_of(events)[0] != "start_map":
            raise ParseError("not an SPDX 2 JSON document", display_path, 1)
        described: set[str] = set()
        # Packages without a purl are reported unless the document describes them (the image itself);
        # `documentDescribes` may come after the packages, so they wait for the end.
        without_purl: list[tuple[object, Unresolved]] = []
        for key in members(events):
            event, value = value_of(events)
            if key == "spdxVersion":
                if not str(value or "").startswith("SPDX-2"):
                    raise ParseError("not an SPDX 2 JSON document", display_path, 1)
                yield from run.confirm()
            elif key == "documentDescribes" and event == "start_array":
                described.update(_strings(events, self.limits.max_components))
            elif key == "packages" and event == "start_array":
                for first, _value in events:
                    if first == "end_array":
                        break
                    if first != "start_map":
                        skip(events, first)
                        continue
                    item = self._package(events, run)
                    if isinstance(item, tuple):
                        without_purl.append(item)
                    elif item is not None:
                        yield from run.out([item])
            else:
                skip(events, event)
        if not run.confirmed:
            raise ParseError("not an SPDX 2 JSON document", display_path, 1)
        yield from (unresolved for spdxid, unresolved in without_purl if spdxid not in described)
        yield from run.warnings("packages")

    def _package(self, events: Events, run: _Run) -> Extracted | tuple[object, Unresolved] | None:
        """One package: its component (from the first purl: several name the same package), or
        (SPDXID, Unresolved) when it has none, or None past the limit."""
        keep = run.keep()
        stream = run.stream
        fields: dict[str, object] = {}
        name_at = 0
        purls: list[tuple[str, int | None]] = []
        for key in members(events):
            event, value = value_of(events)
            if keep and key == "externalRefs" and event == "start_array":
                purls.extend(_purl_refs(events, stream))
            elif event == "start_map" or event == "start_array":
                skip(events, event)
            elif keep and key in ("SPDXID", "name", "versionInfo"):
                fields[key] = value
                if key == "name":
                    name_at = stream.mark()  # its line is looked for only if there is no purl
        if not keep:
            return None
        if purls:
            purl, line = purls[0]
            return component_from_purl(purl, Location(run.display, line), fields.get("versionInfo"))
        name = fields.get("name")
        if name and isinstance(name, _SCALARS):
            line = stream.line_of("name", name, since=name_at) if isinstance(name, str) else None
            unresolved = _unresolved(name, fields.get("versionInfo"), run.display, line)
            return fields.get("SPDXID"), unresolved
        return None


def _purl_refs(events: Events, stream: JsonEvents) -> Iterator[tuple[str, int | None]]:
    """(purl, line) of each `referenceType: purl` entry of an `externalRefs` array just opened."""
    for event, _value in events:
        if event == "end_array":
            return
        if event != "start_map":
            skip(events, event)
            continue
        kind: object = None
        locator: str | None = None
        line: int | None = None
        for key in members(events):
            first, value = value_of(events)
            skip(events, first)
            if key == "referenceType":
                kind = value
            elif key == "referenceLocator" and isinstance(value, str) and value and kind in ("purl", None):
                # Located now, in document order, unless its type said already it is no purl (a CPE):
                # a search past the package's name would lose the name's line.
                locator, line = value, stream.line_of(key, value)
        if kind == "purl" and locator is not None:
            yield locator, line


def _strings(events: Events, limit: int) -> Iterator[str]:
    """The strings of an array just opened (at most `limit`; the rest are skipped)."""
    count = 0
    for event, value in events:
        if event == "end_array":
            return
        skip(events, event)
        if isinstance(value, str) and count < limit:
            count += 1
            yield value
