"""Version ordering per ecosystem, with the ecosystems' own maintained libraries.

`version_key(ecosystem, version, range_type)` turns a version string into an object that compares in
that ecosystem's order, or None when the string is not a valid version there. Keys of one ecosystem
compare with each other only; the matcher never mixes them.

| ecosystem                          | ordering                        | library                           |
| ---------------------------------- | ------------------------------- | --------------------------------- |
| PyPI                               | PEP 440                         | `packaging.version.Version`       |
| npm, Go, crates.io, Hex, Pub, and  | SemVer 2.0 (section 11)         | `semver` (parsed), tuple key      |
| every `SEMVER` range               |                                 |                                   |
| Debian, Ubuntu                     | dpkg                            | `debian.debian_support.Version`   |
| Alpine, Wolfi, Chainguard          | apk                             | `univers` AlpineLinuxVersion      |
| Maven                              | Maven ComparableVersion         | `univers` MavenVersion            |
| RubyGems                           | Gem::Version                    | `univers` RubygemsVersion         |
| Packagist                          | Composer                        | `univers` ComposerVersion         |
| NuGet                              | NuGet                           | `univers` NugetVersion            |

Anything else has no ordering: only exact matches against `affected[].versions` lists apply (the
matcher counts such ranges as skipped).

Invalid versions: a PEP 440-invalid PyPI version (there are real ones, e.g. `2.0.0-final`) yields None,
so it can only be matched by exact string equality against an enumerated `versions` list, which is how
osv.dev itself treats them. SemVer is parsed leniently where the ecosystems are lenient: a leading `v`
is dropped (Go tags), and a missing minor or patch is padded (`1.2` → `1.2.0`). Go pseudo-versions
(`0.0.0-20210101000000-abcdef123456`) are ordinary SemVer prereleases and need nothing special. Build
metadata (`+incompatible`) is ignored for ordering, as SemVer requires.

Each distinct (ecosystem, version, range type) is parsed once (an LRU cache): inventories repeat the
same versions and advisories repeat the same bounds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import semver
from debian.debian_support import Version as DebianVersion
from packaging.version import InvalidVersion, Version
from univers.versions import (
    AlpineLinuxVersion,
    ComposerVersion,
    MavenVersion,
    NugetVersion,
    RubygemsVersion,
)

__all__ = [
    "ORDERED_ECOSYSTEMS",
    "compare_versions",
    "semver_key",
    "supports_ordering",
    "version_key",
]

# A SemVer key is a plain tuple so that comparisons run at C speed: (major, minor, patch, pre) with
# `pre` = (1,) for a release (sorts after every prerelease) or (0, ids...) where numeric identifiers are
# (0, n) and sort before alphanumeric ones (1, s) — exactly SemVer 2.0 section 11.
SemverKey = tuple[int, int, int, tuple[Any, ...]]


def semver_key(text: str) -> SemverKey | None:
    """Parse a SemVer version leniently (leading `v`, missing minor/patch) into a sortable tuple."""
    raw = text.strip()
    if raw[:1] in ("v", "V"):
        raw = raw[1:]
    try:
        parsed = semver.Version.parse(raw, optional_minor_and_patch=True)
    except (ValueError, TypeError):
        return None
    if parsed.prerelease is None:
        pre: tuple[Any, ...] = (1,)
    else:
        idents = tuple((0, int(p)) if p.isdigit() else (1, p) for p in str(parsed.prerelease).split("."))
        pre = (0, *idents)
    return (parsed.major, parsed.minor, parsed.patch, pre)


def _pep440(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _debian(text: str) -> DebianVersion | None:
    try:
        return DebianVersion(text)
    except ValueError:
        return None


def _univers(cls: Any) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            if not cls.is_valid(text):
                return None
            return cls(text)
        except Exception:  # univers raises a zoo of types (InvalidVersion, ValueError, TypeError...)
            return None

    return parse


def _go(text: str) -> SemverKey | None:
    # The standard library is versioned `go1.21.3` in the wild and `1.21.3` in the Go database.
    if text.startswith("go"):
        text = text[2:]
    return semver_key(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "PyPI": _pep440,
    "npm": semver_key,
    "Go": _go,
    "crates.io": semver_key,
    "Hex": semver_key,
    "Pub": semver_key,
    "SwiftURL": semver_key,
    "Debian": _debian,
    "Ubuntu": _debian,
    "Alpine": _univers(AlpineLinuxVersion),
    "Wolfi": _univers(AlpineLinuxVersion),
    "Chainguard": _univers(AlpineLinuxVersion),
    "Maven": _univers(MavenVersion),
    "RubyGems": _univers(RubygemsVersion),
    "Packagist": _univers(ComposerVersion),
    "NuGet": _univers(NugetVersion),
}

ORDERED_ECOSYSTEMS = frozenset(_PARSERS)


def supports_ordering(ecosystem: str, range_type: str = "ECOSYSTEM") -> bool:
    """Whether ranges of this type can be evaluated for this (base) ecosystem."""
    if range_type == "SEMVER":
        return True
    return range_type == "ECOSYSTEM" and ecosystem in _PARSERS


@functools.lru_cache(maxsize=262_144)
def version_key(ecosystem: str, version: str, range_type: str = "ECOSYSTEM") -> Any:
    """A comparable key for `version` in `ecosystem` (base name, e.g. `Debian`), or None if invalid.

    For `SEMVER` ranges the SemVer order applies whatever the ecosystem (the OSV schema says so),
    except Go, whose versions carry a `go`/`v` prefix that `_go` strips first.
    """
    if range_type == "SEMVER":
        return _go(version) if ecosystem == "Go" else semver_key(version)
    parser = _PARSERS.get(ecosystem)
    if parser is None:
        return None
    return parser(version)


def compare_versions(ecosystem: str, a: str, b: str, range_type: str = "ECOSYSTEM") -> int:
    """-1, 0 or 1 as `a` sorts before, equal to or after `b`; ValueError if either is not valid."""
    ka = version_key(ecosystem, a, range_type)
    kb = version_key(ecosystem, b, range_type)
    if ka is None or kb is None:
        bad = a if ka is None else b
        raise ValueError(f"not a valid {ecosystem} version: {bad!r}")
    return -1 if ka < kb else (1 if kb < ka else 0)
