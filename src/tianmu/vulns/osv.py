"""OSV records: reading them from zips, directories and files, and turning them into table rows.

Everything here is pure (no database): `iter_blobs` yields the raw bytes of each record file (or,
for a file over the record-size limit, the error that refused it, without reading it), `parse_record`
validates one record and returns the rows the store keeps for it (text fields cut to the field limit,
each cut reported). Names are normalised
by `normalize_name`, the single function used both when importing and when matching, so a look-up is
an exact index hit on (ecosystem, name).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tianmu.core.errors import ParseError
from tianmu.store.knowledge import ImportLimits, LimitError, cut_field, load_json, read_limited

__all__ = [
    "OSV_SUFFIXES",
    "ParsedRecord",
    "canonical_ecosystem",
    "iter_blobs",
    "normalize_name",
    "parse_blob",
    "parse_record",
    "split_ecosystem",
]

OSV_SUFFIXES = (".json", ".yaml", ".yml")

_KNOWN = [
    "AlmaLinux",
    "Alpine",
    "Android",
    "Bitnami",
    "Chainguard",
    "ConanCenter",
    "CRAN",
    "crates.io",
    "Debian",
    "GHC",
    "GitHub Actions",
    "Go",
    "Hackage",
    "Hex",
    "Linux",
    "Mageia",
    "Maven",
    "npm",
    "NuGet",
    "openSUSE",
    "OSS-Fuzz",
    "Packagist",
    "Photon OS",
    "Pub",
    "PyPI",
    "Red Hat",
    "Rocky Linux",
    "RubyGems",
    "SUSE",
    "SwiftURL",
    "Ubuntu",
    "Wolfi",
]
_CANONICAL = {name.lower(): name for name in _KNOWN}
# Ecosystems whose `:suffix` is a distribution release (as opposed to Maven's/Packagist's repository URL).
DISTRO_ECOSYSTEMS = frozenset(
    {"Debian", "Ubuntu", "Alpine", "AlmaLinux", "Rocky Linux", "Mageia", "Photon OS"}
)


def canonical_ecosystem(name: str) -> str:
    """The OSV spelling of an ecosystem name given in any case (`pypi` → `PyPI`); unknown ones as given."""
    return _CANONICAL.get(name.strip().lower(), name.strip())


def split_ecosystem(ecosystem_full: str) -> tuple[str, str | None]:
    """Base ecosystem and release: `Debian:12` → (`Debian`, `12`); `PyPI` → (`PyPI`, None)."""
    base, sep, rest = ecosystem_full.partition(":")
    return canonical_ecosystem(base), (rest if sep else None)


_PEP503 = re.compile(r"[-_.]+")


def normalize_name(ecosystem: str, name: str) -> str:
    """The package name as stored and looked up, for a base ecosystem name.

    PyPI: PEP 503 (`Foo_Bar.baz` → `foo-bar-baz`). Packagist: lowercase (Composer names are
    case-insensitive). Everything else is case-sensitive in its registry and is kept as written:
    npm (new names are lowercase, some old ones are not), Go module paths, Maven `group:artifact`,
    crates.io, RubyGems, NuGet, and distribution source package names.
    """
    name = name.strip()
    if ecosystem == "PyPI":
        return _PEP503.sub("-", name).lower()
    if ecosystem == "Packagist":
        return name.lower()
    return name


class _TextTimestampLoader(yaml.SafeLoader):
    """SafeLoader that keeps unquoted timestamps as the text written (OSV times are strings)."""


_TextTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(slots=True)
class ParsedRecord:
    """One OSV record, ready for the store."""

    id: str
    content_hash: str
    advisory: dict[str, Any]
    affected: list[dict[str, Any]]
    aliases: list[str]
    ecosystems: set[str] = field(default_factory=set)


def iter_blobs(path: Path, limits: ImportLimits | None = None) -> Iterator[tuple[str, bytes | ParseError]]:
    """(name, bytes) of every OSV record file in a zip, a directory (recursive) or a single file.

    Names are relative (member name in the zip, path under the directory) so errors point at them.
    Files are read in sorted order so that digests and error lists are reproducible. A file or member
    over `max_record_bytes`, or one that cannot be read, comes as a `ParseError` instead of its bytes.
    """
    limit = (limits or ImportLimits()).max_record_bytes
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in OSV_SUFFIXES)
        for file in files:
            name = file.relative_to(path).as_posix()
            yield name, _read_file(file, name, limit)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = sorted(
                (info for info in archive.infolist() if not info.is_dir()),
                key=lambda info: info.filename,
            )
            for info in members:
                if info.filename.lower().endswith(OSV_SUFFIXES):
                    yield info.filename, _read_member(archive, info, limit)
    else:
        yield path.name, _read_file(path, path.name, limit)


def _read_file(file: Path, name: str, limit: int) -> bytes | ParseError:
    try:
        return read_limited(file, limit)
    except LimitError as exc:
        return ParseError(f"record refused: {exc}", name)
    except OSError as exc:
        return ParseError(f"cannot read: {exc.strerror or exc}", name)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes | ParseError:
    if info.file_size > limit:
        return ParseError(
            f"record refused: {info.file_size} bytes, over the limit of {limit} (max_record_bytes)",
            info.filename,
        )
    try:
        # The size in the header may lie: never read more than the limit allows.
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return ParseError(f"cannot read the zip member: {exc}", info.filename)
    if len(data) > limit:
        return ParseError(
            f"record refused: over the limit of {limit} bytes (max_record_bytes)", info.filename
        )
    return data


def parse_blob(name: str, blob: bytes, limits: ImportLimits | None = None) -> list[dict[str, Any]]:
    """Decode one record file (JSON, or YAML by suffix); a JSON file may hold a list of records."""
    limits = limits or ImportLimits()
    try:
        if name.lower().endswith((".yaml", ".yml")):
            text = blob.decode("utf-8")
            if _has_alias(text):
                # OSV records need no aliases; a nest of them (a "billion laughs") would expand when stored.
                raise ParseError(
                    "record refused: YAML aliases (`*name`) are not allowed in an OSV record", name
                )
            data = yaml.load(text, Loader=_TextTimestampLoader)  # a SafeLoader subclass
        else:
            data = load_json(blob, limits)
    except LimitError as exc:
        raise ParseError(f"record refused: {exc}", name) from exc
    except RecursionError as exc:  # YAML nested deeper than the parser's stack
        raise ParseError(
            f"record refused: nested too deeply (limit max_depth {limits.max_depth})", name
        ) from exc
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg}", name, exc.lineno) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ParseError(f"invalid YAML: {exc}", name, line) from exc
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8: {exc.reason}", name) from exc
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(item, dict) for item in items):
        raise ParseError("not an OSV record (expected a JSON object)", name)
    return items


def _has_alias(text: str) -> bool:
    """True when the YAML document uses an alias (checked on the event stream, nothing constructed)."""
    if "*" not in text:
        return False
    return any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_record(
    record: dict[str, Any],
    name: str,
    blob_hash: str,
    limits: ImportLimits | None = None,
    notes: list[str] | None = None,
) -> ParsedRecord:
    """Validate one OSV record and build its advisory, affected and alias rows.

    `summary` and `details` longer than `max_field_chars` are cut, each cut appended to `notes`.
    """
    limits = limits or ImportLimits()
    notes = notes if notes is not None else []
    vid = record.get("id")
    if not isinstance(vid, str) or not vid.strip():
        raise ParseError("OSV record without an `id`", name)
    if len(vid) > 512:
        raise ParseError(f"OSV `id` of {len(vid)} characters (an id is short)", name)
    affected_in = record.get("affected") or []
    if not isinstance(affected_in, list):
        raise ParseError(f"{vid}: `affected` is not a list", name)
    aliases_in = record.get("aliases") or []
    if not isinstance(aliases_in, list):
        raise ParseError(f"{vid}: `aliases` is not a list", name)
    aliases = sorted({str(a) for a in aliases_in if a and str(a) != vid})
    refs = [r.get("url") for r in record.get("references") or [] if isinstance(r, dict) and r.get("url")]
    severity = record.get("severity") or []
    affected: list[dict[str, Any]] = []
    ecosystems: set[str] = set()
    for index, entry in enumerate(affected_in):
        if not isinstance(entry, dict):
            raise ParseError(f"{vid}: affected[{index}] is not an object", name)
        package = entry.get("package") or {}
        if not isinstance(package, dict) or not package.get("ecosystem") or not package.get("name"):
            # OSV allows affected entries without a package (GIT-only records); nothing to match by name.
            continue
        ecosystem_full = str(package["ecosystem"])
        ecosystem, _release = split_ecosystem(ecosystem_full)
        ranges = entry.get("ranges") or []
        versions = entry.get("versions") or []
        if not isinstance(ranges, list) or not isinstance(versions, list):
            raise ParseError(f"{vid}: affected[{index}] ranges/versions are not lists", name)
        for rng in ranges:
            if not isinstance(rng, dict) or not isinstance(rng.get("events"), list):
                raise ParseError(f"{vid}: affected[{index}] has a range without `events`", name)
            # The matcher reads events as {kind: version text}: anything else is refused here.
            if not all(
                isinstance(e, dict) and all(isinstance(v, str) for v in e.values()) for e in rng["events"]
            ):
                raise ParseError(f"{vid}: affected[{index}] has an event that is not {{kind: version}}", name)
        ecosystems.add(ecosystem)
        affected.append(
            {
                "advisory_id": vid,
                "ecosystem": ecosystem,
                "ecosystem_full": ecosystem_full,
                "name": normalize_name(ecosystem, str(package["name"])),
                "purl": package.get("purl"),
                "versions": [str(v) for v in versions],
                "ranges": ranges,
                "severity": entry.get("severity"),
                "ecosystem_specific": entry.get("ecosystem_specific"),
                "database_specific": entry.get("database_specific"),
            }
        )
    advisory = {
        "id": vid,
        "content_hash": blob_hash,
        "modified": _text(record.get("modified")),
        "published": _text(record.get("published")),
        "withdrawn": _text(record.get("withdrawn")),
        "summary": cut_field(str(record.get("summary") or ""), limits, f"{name}: {vid}: summary", notes),
        "details": cut_field(str(record.get("details") or ""), limits, f"{name}: {vid}: details", notes),
        "aliases": aliases,
        "severity": severity if isinstance(severity, list) else [],
        "references": refs,
        "database_specific": record.get("database_specific"),
    }
    return ParsedRecord(vid, blob_hash, advisory, affected, aliases, ecosystems)


def blob_hash(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()
