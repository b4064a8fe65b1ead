"""The intel matcher: events, log text, file hashes and network peers against the indicator index.

No loop runs over indicators. Text is scanned once by one regular expression that picks out URLs,
host names, IPv4 addresses and hex digests (after lower-casing and refanging, so `hxxp://Evil[.]com`
and `EVIL.COM` are seen as `http://evil.com`); each candidate costs one or a few set probes in the
built index (`tianmu.intel.index`). Log text is scanned a block of lines at a time, and the line of a
hit is found by counting newlines only when there is a hit.

Every hit becomes a `Finding` of kind `intel`, one per (indicator, file): the first sighting gives
the evidence line and time, later ones raise the count (see `tianmu.intel.findings`). Expired or
not-yet-valid indicators do not hit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from tianmu.core.models import Asset, Event, Finding, FindingKind, utcnow
from tianmu.intel.fields import (
    ALL_FIELDS,
    HASH_BY_LENGTH,
    PATH_FIELDS,
    PathPatterns,
    compile_path_set,
    event_entities,
    excluded,
    observations,
    url_key_of,
)
from tianmu.intel.findings import Hits, Sighting, parse_time, severity_for
from tianmu.intel.index import IntelIndex, _ipv4_number, load_index
from tianmu.intel.models import IntelRecord
from tianmu.intel.normalize import NormalizeError, normalize_ip
from tianmu.intel.records import RecordCache
from tianmu.store.database import Store

__all__ = ["Hits", "IntelMatcher", "LineScan", "Sighting", "severity_for"]

_TOKENS = re.compile(
    r"(?<![a-z0-9_-])(?:[0-9a-f]{32,128}+(?![a-z0-9_-]|\.[a-z0-9_-])|[a-z0-9_-]++(?:\.[a-z0-9_-]++)+)"
)
"""Host names and IPv4 addresses (dotted words) and hex digests, in lower-cased text."""
_URLS = re.compile(r"(?:https?|ftp)://[^\s\"'<>\\^`{|}]++")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:)*+:(?::?[0-9a-f]{1,4})*+)(?![\w:.])"
)
"""IPv6 candidates: eight groups, or a `::` compressed form (never `03:05:40`, never `std::vector`).

Free text is searched for them only where `::` occurs (an uncompressed address alone in a line of text
is not looked for: loggers print the compressed form; typed fields match any form).
"""
_EMAIL = re.compile(r"[a-z0-9._%+-]+@(?:[a-z0-9-]+\.)+[a-z]{2,63}")
_REFANG_LOWER = (
    ("[.]", "."),
    ("(.)", "."),
    ("{.}", "."),
    ("[dot]", "."),
    ("(dot)", "."),
    ("hxxp", "http"),
    ("h**p", "http"),
    ("[://]", "://"),
    ("[:]", ":"),
    ("[@]", "@"),
    ("[at]", "@"),
)
"""`tianmu.intel.normalize.refang` for lower-cased text, as plain replacements (no regex pass)."""
_TRAILING = ".,;:!?)]}'\""
_BLOCK = 2000
_SEEN_VALUES = 1 << 16
"""Typed values whose index hits are remembered (bounded: cleared when full)."""


class IntelMatcher:
    """Matches values, text, events and earlier findings against the intel base of a store."""

    def __init__(self, store: Store, index: IntelIndex, now: datetime | None = None) -> None:
        self.store = store
        self.index = index
        self.now = now or utcnow()
        self.records = RecordCache(store, self.now)
        self._has_v6 = bool(index.networks6) or any(":" in ip for ip in index.ips)
        self._path_matcher: PathPatterns | None = None
        self._seen_values: dict[tuple[str, str], tuple[tuple[tuple[str, str], str], ...]] = {}

    @classmethod
    def open(cls, store: Store, home: Path | None = None, now: datetime | None = None) -> IntelMatcher:
        return cls(store, load_index(store, home), now)

    def record(self, kind: str, value: str, *, include_expired: bool = False) -> IntelRecord | None:
        """The merged record of an indicator; None when unknown (or, by default, expired everywhere)."""
        return self.records.record(kind, value, include_expired=include_expired)

    def prefetch(self, keys: Iterable[tuple[str, str]]) -> None:
        self.records.prefetch(keys)

    # --- typed values ------------------------------------------------------------------------------------

    def probe(self, kind: str, value: str) -> tuple[str, str] | None:
        """(indicator type, indicator) for one normalised observed value, via the index only."""
        index = self.index
        if kind == "ip":
            return index.match_ip(value)
        if kind == "domain":
            return index.match_domain(value)
        if kind == "url":
            found = index.match_url_key(value.split("://", 1)[-1].lower())
            return ("url", found) if found else None
        if kind in ("md5", "sha1", "sha256", "sha512"):
            return (kind, value) if value in index.hashes else None
        if kind == "email":
            return ("email", value) if value in index.emails else None
        if kind == "user-agent":
            return ("user-agent", value) if value in index.user_agents else None
        return None

    def match_values(self, values: Iterable[tuple[str, str]]) -> list[Sighting]:
        """Typed observations `(field, value)`: the field name says the type (see `FIELD_KINDS`), an
        unknown field name means "guess the type from the value". A URL is also matched by its host.
        """
        found: dict[tuple[str, str], Sighting] = {}
        for name, raw in values:
            for hit, value in self._candidates(name, raw):
                if hit not in found and self.record(*hit):
                    found[hit] = Sighting(hit[0], hit[1], value, name)
        return list(found.values())

    def _candidates(self, name: str, raw: str) -> tuple[tuple[tuple[str, str], str], ...]:
        """The index hits of one typed value, remembered: logs repeat the same addresses and hosts in
        thousands of events, and normalising and classifying each costs more than matching it."""
        key = (name, raw)
        known = self._seen_values.get(key)
        if known is None:
            known = tuple(
                (hit, value) for kind, value in observations(name, raw) if (hit := self.probe(kind, value))
            )
            if len(self._seen_values) >= _SEEN_VALUES:
                self._seen_values.clear()
            self._seen_values[key] = known
        return known

    def lookup(self, value: str) -> list[IntelRecord]:
        """Every indicator a value hits: `evil.com` itself, the parent domain of `a.evil.com`, the CIDR
        of an address, a URL and its host. Expired indicators are included (their validity says so).
        """
        records: list[IntelRecord] = []
        for kind, canonical in observations("value", value):
            hit = self.probe(kind, canonical)
            if hit:
                record = self.record(*hit, include_expired=True)
                if record is not None and record not in records:
                    records.append(record)
        return records

    # --- free text ---------------------------------------------------------------------------------------

    def scan_text(self, text: str) -> list[Sighting]:
        """Indicators in free text (one log line, a message, an analyst note), once each."""
        found: dict[tuple[str, str], Sighting] = {}
        for _offset, kind, indicator, observed in self._scan(text):
            key = (kind, indicator)
            if key not in found and self.record(kind, indicator):
                found[key] = Sighting(kind, indicator, observed)
        return list(found.values())

    def scan_lines(self, lines: Sequence[str], first_line: int = 1) -> Iterator[Sighting]:
        """Sightings with their line number, scanning blocks of lines at once (the fast path for logs)."""
        for start in range(0, len(lines), _BLOCK):
            block = "\n".join(lines[start : start + _BLOCK])
            line, position = first_line + start, 0
            hits = self._scan(block)
            self.prefetch((kind, indicator) for _offset, kind, indicator, _observed in hits)
            for offset, kind, indicator, observed in hits:
                # Lines are counted only up to hits, and only once per block.
                line += block.count("\n", position, offset)
                position = offset
                if self.record(kind, indicator):
                    yield Sighting(kind, indicator, observed, "text", line)

    def _scan(self, text: str) -> list[tuple[int, str, str, str]]:
        """(offset, indicator type, indicator, observed text) of every hit in `text`, by offset."""
        low = text.lower()
        for marker, plain in _REFANG_LOWER:
            # Plain replacements (C speed) on lower-cased text; they never add or remove a newline,
            # so line counting stays right.
            if marker in low:
                low = low.replace(marker, plain)
        index = self.index
        domains, ips, hashes = index.domains, index.ips, index.hashes
        exact = index.exact_domains or None
        cidrs = bool(index.networks4)
        first_octets = index.first_octets4
        found: list[tuple[int, str, str, str]] = []
        # Hot loop: one pass of a possessive, look-behind-anchored pattern (no backtracking inside
        # words, one attempt per word) and set probes; hosts walk up their parent domains.
        for match in _TOKENS.finditer(low):
            token = match.group()
            hit: tuple[str, str] | None = None
            if "." not in token:
                kind = HASH_BY_LENGTH.get(len(token))
                if kind is not None and token in hashes:
                    hit = (kind, token)
            elif token[0].isdigit() and token.count(".") == 3 and token.replace(".", "").isdigit():
                if token in ips:
                    hit = ("ip", token)
                elif cidrs and token[: token.find(".")] in first_octets:
                    number = _ipv4_number(token)
                    if number is not None:
                        hit = index.match_network4(number)
            elif exact is not None and token in exact:
                hit = ("domain", token)
            else:
                name = token
                while True:
                    if name in domains:
                        hit = ("domain", name)
                        break
                    dot = name.find(".")
                    if dot < 0:
                        break
                    name = name[dot + 1 :]
            if hit is not None:
                found.append((match.start(), hit[0], hit[1], token))
        extra = len(found)
        if index.urls and "://" in low:
            # URL indicators; their hosts were looked up above like any other host name.
            url_hosts = index.url_hosts
            for match in _URLS.finditer(low):
                url = match.group()
                # Only URLs on a host some URL indicator names are canonicalised and looked up.
                begin = url.find("://") + 3
                end = min(
                    (i for i in (url.find("/", begin), url.find("?", begin)) if i >= 0), default=len(url)
                )
                host = url[begin:end].rpartition("@")[2].rstrip(_TRAILING)
                if host in url_hosts or host.split(":", 1)[0] in url_hosts:
                    url = url.rstrip(_TRAILING)
                    indicator = index.match_url_key(url_key_of(url))
                    if indicator is not None:
                        found.append((match.start(), "url", indicator, url))
        if index.emails and "@" in low:
            for match in _EMAIL.finditer(low):
                if match.group() in index.emails:
                    found.append((match.start(), "email", match.group(), match.group()))
        if self._has_v6 and "::" in low:
            for match in _IPV6.finditer(low):
                candidate = match.group()
                if candidate.count(":") < 2 or candidate.startswith(":::"):
                    continue
                try:
                    value = normalize_ip(candidate)
                except NormalizeError:
                    continue
                v6 = index.match_ip(value)
                if v6:
                    found.append((match.start(), v6[0], v6[1], value))
        if len(found) > extra and extra:
            found.sort()
        return found

    # --- file paths (LOKI filename IOCs) -----------------------------------------------------------------

    def path_patterns(self) -> PathPatterns:
        """The filename indicators in one RE2 set, built on first use; `.refused` says which it left out."""
        if self._path_matcher is None:
            self._path_matcher = compile_path_set(sorted(self.index.filenames))
        return self._path_matcher

    def match_path(self, path: str, field: str = "path") -> list[Sighting]:
        """Filename indicators (regular expressions) matching a file path, false positives excluded.

        LOKI's expressions are written for Windows paths (System32 and backslashes): a path with `/` is
        tried as written and with backslash separators, so a mounted Windows disk is recognised too.
        """
        if not self.index.filenames:
            return []
        matcher = self.path_patterns()
        forms = [path, path.replace("/", "\\")] if "/" in path else [path]
        found: dict[str, Sighting] = {}
        for text in forms:
            for pattern in matcher(text):
                record = self.record("filename", pattern)
                if pattern in found or record is None or excluded(record, text):
                    continue
                found[pattern] = Sighting("filename", pattern, path, field)
        return list(found.values())

    def match_paths(self, paths: Iterable[str], asset: Asset) -> Iterator[Finding]:
        """Filename indicators over file paths: a file-system sweep by name, as LOKI does."""
        hits = Hits()
        if self.index.filenames:
            for path in paths:
                for sighting in self.match_path(path):
                    record = self.record(sighting.type, sighting.indicator)
                    if record is not None:
                        hits.add(record, sighting, path, None, None, None, "", {"file": [path]})
        yield from hits.findings(asset)

    # --- events and findings -----------------------------------------------------------------------------

    def event_sightings(self, event: Event) -> list[Sighting]:
        """What an event hits: its typed fields first (so the field is named), then its raw text."""
        fields = event.fields
        values: list[tuple[str, str]] = []
        for name in ALL_FIELDS:
            value = fields.get(name)
            if value not in (None, "", "-"):
                values.append((name, str(value)))
        host = fields.get("cs-host")
        uri = fields.get("cs-uri") or fields.get("c-uri")
        if host and uri and str(uri).startswith("/"):
            values.append(("cs-host+cs-uri", f"http://{host}{uri}"))
        found = {(s.type, s.indicator): s for s in self.match_values(values)}
        if self.index.filenames:
            for name in PATH_FIELDS:
                value = fields.get(name)
                if value:
                    for sighting in self.match_path(str(value), name):
                        found.setdefault((sighting.type, sighting.indicator), sighting)
        for sighting in self.scan_text(event.raw):
            found.setdefault((sighting.type, sighting.indicator), sighting)
        return list(found.values())

    def match_events(self, events: Iterable[Event], asset: Asset) -> Iterator[Finding]:
        """One finding per (indicator, file) over the events, with the first sighting as evidence."""
        hits = Hits()
        for event in events:
            self.add_event(hits, event)
        yield from hits.findings(asset)

    def add_event(self, hits: Hits, event: Event) -> None:
        """The sightings of one event into `hits` (the push form of `match_events`, for event sinks)."""
        for sighting in self.event_sightings(event):
            record = self.record(sighting.type, sighting.indicator)
            if record is not None:
                origin = event.origin
                entities = event_entities(event.fields)
                hits.add(
                    record, sighting, origin.path, origin.line, None, event.timestamp, event.raw, entities
                )

    def match_lines(self, lines: Iterable[str], path: str, asset: Asset) -> Iterator[Finding]:
        """Plain text lines of one file (when no log reader understands it), streamed in blocks."""
        scan = self.line_scan(path)
        for line in lines:
            scan.add(line)
        yield from scan.findings(asset)

    def line_scan(self, path: str) -> LineScan:
        """A push-style scan of one file's text lines (line numbers from 1), in bounded blocks."""
        return LineScan(self, path)

    def _hit_lines(self, hits: Hits, block: list[str], first: int, path: str) -> None:
        for sighting in self.scan_lines(block, first):
            record = self.record(sighting.type, sighting.indicator)
            if record is not None and sighting.line is not None:
                hits.add(record, sighting, path, sighting.line, None, None, block[sighting.line - first], {})

    def match_findings(self, findings: Iterable[Finding], asset: Asset) -> Iterator[Finding]:
        """Earlier findings' file hashes (malware scan) and entities (network peers, hosts, URLs)."""
        hits = Hits()
        for finding in findings:
            if finding.kind == FindingKind.INTEL:
                continue
            evidence = finding.evidence
            values = [(k, str(evidence[k])) for k in ("sha256", "sha1", "md5") if evidence.get(k)]
            entities = evidence.get("entities") or {}
            for kind in ("ip", "domain", "url", "hash", "host"):
                values += [(kind, str(v)) for v in entities.get(kind, [])]
            sightings = self.match_values(values)
            if evidence.get("path") and self.index.filenames and finding.kind == FindingKind.MALWARE:
                sightings += self.match_path(str(evidence["path"]))
            for sighting in sightings:
                record = self.record(sighting.type, sighting.indicator)
                if record is not None:
                    where = str(evidence.get("path", finding.asset.name))
                    time = parse_time(evidence.get("time"))
                    copied = {k: list(v) for k, v in entities.items()}
                    hits.add(
                        record,
                        sighting,
                        where,
                        evidence.get("line"),
                        evidence.get("record"),
                        time,
                        "",
                        copied,
                    )
        yield from hits.findings(asset)


class LineScan:
    """Lines of one text file pushed one by one; matched a block at a time (bounded memory)."""

    def __init__(self, matcher: IntelMatcher, path: str) -> None:
        self.matcher = matcher
        self.path = path
        self.hits = Hits()
        self.block: list[str] = []
        self.first = 1

    def add(self, line: str) -> None:
        self.block.append(line.rstrip("\r\n"))
        if len(self.block) >= _BLOCK * 10:
            self._flush()

    def findings(self, asset: Asset) -> Iterator[Finding]:
        self._flush()
        yield from self.hits.findings(asset)

    def _flush(self) -> None:
        self.matcher._hit_lines(self.hits, self.block, self.first, self.path)
        self.first += len(self.block)
        self.block = []
