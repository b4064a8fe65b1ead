"""The built indicator index: hash sets and per-prefix-length network tables, saved under the data directory.

Matching must not loop over indicators, and a million of them must load in well under two seconds. So
the stored indicators (`intel_indicators`, the provenance) are compiled into plain sets:

- domains: one set for "this name and its subdomains" and one for exact names; a host is looked up
  with its parent names (`a.b.evil.com`, `b.evil.com`, `evil.com`), at most one probe per label;
- addresses: a set of canonical address strings, and for networks one set of network numbers per
  prefix length (a hash-based longest-prefix table: at most 33 probes for IPv4, 129 for IPv6, and only
  for the lengths that occur — maltrail's scanner ranges use a handful);
- URLs (keyed without scheme), hashes, e-mail addresses and user agents: sets.

The file is `<home>/intel/index-<digest>.bin`, where the digest covers every intel source's digest: a
new import makes a new index and the old one is removed. It is written with `marshal`, which loads sets
of strings at C speed and, unlike pickle, cannot be made to run code by whoever edits the file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import marshal
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from tianmu.store.database import Store
from tianmu.store.schema import intel_indicators, kb_sources

__all__ = ["INTEL_KIND", "IntelIndex", "index_digest", "load_index"]

INTEL_KIND = "intel"
"""`kb_sources.kind` of every threat-intelligence source."""
_FORMAT = 2
_HASH_TYPES = ("md5", "sha1", "sha256", "sha512")


@dataclass(slots=True)
class IntelIndex:
    digest: str = ""
    domains: set[str] = field(default_factory=set)
    exact_domains: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)
    networks4: dict[int, set[int]] = field(default_factory=dict)
    """Prefix length → network numbers shifted right by (32 - length)."""
    networks6: dict[int, set[int]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    """Lower-case `host/path?query` → the indicator (URLs are matched without scheme or case)."""
    hashes: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    user_agents: set[str] = field(default_factory=set)
    filenames: set[str] = field(default_factory=set)
    """Regular expressions over file paths (LOKI filename IOCs), matched at once by an RE2 set."""
    url_hosts: set[str] = field(default_factory=set)
    """Hosts (`host[:port]`) of the URL indicators: a cheap first test before a URL is canonicalised."""

    first_octets4: set[str] = field(default_factory=set)
    """First octets (as text) some listed IPv4 network covers: other addresses skip the network probes."""
    _lengths4: list[tuple[int, int, set[int]]] = field(default_factory=list)
    """(prefix length, shift, network numbers), longest first: the probe order for an IPv4 address."""

    def __post_init__(self) -> None:
        self._derive()

    def _derive(self) -> None:
        self.url_hosts = {key.split("/", 1)[0] for key in self.urls}
        self._lengths4 = [(n, 32 - n, self.networks4[n]) for n in sorted(self.networks4, reverse=True)]
        octets: set[int] = set()
        for length, _shift, prefixes in self._lengths4:
            if length >= 8:
                octets.update(prefix >> (length - 8) for prefix in prefixes)
            else:
                for prefix in prefixes:
                    first = prefix << (8 - length)
                    octets.update(range(first, first + (1 << (8 - length))))
        self.first_octets4 = {str(octet) for octet in octets}

    def __len__(self) -> int:
        networks = sum(len(v) for v in self.networks4.values()) + sum(len(v) for v in self.networks6.values())
        return (
            len(self.domains)
            + len(self.exact_domains)
            + len(self.ips)
            + networks
            + len(self.urls)
            + len(self.hashes)
            + len(self.emails)
            + len(self.user_agents)
            + len(self.filenames)
        )

    # --- building -------------------------------------------------------------------------------------

    def add(self, kind: str, value: str, exact: bool = False) -> None:
        if kind == "domain":
            (self.exact_domains if exact else self.domains).add(value)
        elif kind == "ip":
            self.ips.add(value)
        elif kind == "cidr":
            network = ipaddress.ip_network(value, strict=False)
            bits = network.max_prefixlen
            table = self.networks4 if network.version == 4 else self.networks6
            table.setdefault(network.prefixlen, set()).add(
                int(network.network_address) >> (bits - network.prefixlen)
            )
        elif kind == "url":
            self.urls[value.split("://", 1)[1].lower()] = value
        elif kind in _HASH_TYPES:
            self.hashes.add(value)
        elif kind == "email":
            self.emails.add(value)
        elif kind == "user-agent":
            self.user_agents.add(value)
        elif kind == "filename":
            self.filenames.add(value)

    def finish(self) -> None:
        # A name some source wants matched with its subdomains is matched so, whatever the others say.
        self.exact_domains -= self.domains
        self._derive()

    # --- look-ups -------------------------------------------------------------------------------------

    def match_domain(self, host: str) -> tuple[str, str] | None:
        """(`domain`, indicator) for a lower-case host name, its own entry or a parent's."""
        if host in self.exact_domains:
            return "domain", host
        domains = self.domains
        name = host
        while True:
            if name in domains:
                return "domain", name
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]

    def match_ip(self, address: str) -> tuple[str, str] | None:
        """(`ip`, address) or (`cidr`, network) for a canonical address string."""
        if address in self.ips:
            return "ip", address
        if not (self.networks4 or self.networks6):
            return None
        number = _ipv4_number(address)
        if number is not None:
            return self.match_network4(number)
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return None
        table, bits = (self.networks4, 32) if parsed.version == 4 else (self.networks6, 128)
        for length in sorted(table, reverse=True):
            prefix = int(parsed) >> (bits - length)
            if prefix in table[length]:
                return "cidr", str(ipaddress.ip_network((prefix << (bits - length), length)))
        return None

    def match_network4(self, number: int) -> tuple[str, str] | None:
        """(`cidr`, network) of the longest listed IPv4 network holding the address `number`."""
        for length, shift, prefixes in self._lengths4:
            prefix = number >> shift
            if prefix in prefixes:
                return "cidr", str(ipaddress.IPv4Network((prefix << shift, length)))
        return None

    def match_url_key(self, key: str) -> str | None:
        """The URL indicator for a lower-case `host/path?query`, with or without its query."""
        found = self.urls.get(key)
        if found is None and "?" in key:
            found = self.urls.get(key.split("?", 1)[0])
        return found

    # --- storage --------------------------------------------------------------------------------------

    def dumps(self) -> bytes:
        return marshal.dumps(
            (
                _FORMAT,
                self.digest,
                self.domains,
                self.exact_domains,
                self.ips,
                self.networks4,
                self.networks6,
                self.urls,
                self.hashes,
                self.emails,
                self.user_agents,
                self.filenames,
            )
        )

    @classmethod
    def loads(cls, data: bytes) -> IntelIndex:
        values = marshal.loads(data)
        if not isinstance(values, tuple) or not values or values[0] != _FORMAT:
            raise ValueError("index file of another format")
        return cls(*values[1:12])


def _ipv4_number(text: str) -> int | None:
    """A dotted-quad address as an integer: `inet_aton` in C, ten times faster than `ipaddress`."""
    if text.count(".") != 3:
        return None  # inet_aton would also take the short forms `10.1` and `10.1.2`
    if (text[0] == "0" or ".0" in text) and any(len(p) > 1 and p[0] == "0" for p in text.split(".")):
        return None  # and read `010` as octal
    try:
        return int.from_bytes(socket.inet_aton(text), "big")
    except OSError:
        return None


def index_digest(store: Store) -> str:
    """Digest over every intel source (name and content digest): the key of the built index."""
    with store.connect() as conn:
        rows = conn.execute(
            select(kb_sources.c.name, kb_sources.c.digest)
            .where(kb_sources.c.kind == INTEL_KIND)
            .order_by(kb_sources.c.name)
        ).all()
    blob = "\n".join(f"{r.name}\t{r.digest}" for r in rows) + f"\nformat {_FORMAT}"
    return hashlib.sha256(blob.encode()).hexdigest()


def build_index(store: Store, digest: str | None = None) -> IntelIndex:
    index = IntelIndex(digest=digest or index_digest(store))
    query = select(intel_indicators.c.type, intel_indicators.c.value, intel_indicators.c.exact)
    with store.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=50_000).execute(query)
        for kind, value, exact in result:
            index.add(kind, value, bool(exact))
    index.finish()
    return index


def _index_dir(home: Path) -> Path:
    return home / "intel"


def load_index(store: Store, home: Path | None, *, rebuild: bool = False) -> IntelIndex:
    """The index for the store's current intel sources: read from disk, or built and saved there."""
    digest = index_digest(store)
    if home is None:
        return build_index(store, digest)
    path = _index_dir(home) / f"index-{digest[:24]}.bin"
    if path.is_file() and not rebuild:
        try:
            index = IntelIndex.loads(path.read_bytes())
            if index.digest == digest:
                return index
        except (ValueError, EOFError, TypeError, OSError):
            pass  # a damaged or foreign file: rebuild it below
    index = build_index(store, digest)
    _save(index, path)
    return index


def _save(index: IntelIndex, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".index-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(index.dumps())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob("index-*.bin"):
        if stale != path:
            stale.unlink(missing_ok=True)
