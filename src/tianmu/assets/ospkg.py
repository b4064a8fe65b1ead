"""OS package databases: Debian/Ubuntu dpkg (`var/lib/dpkg/status`, distroless `status.d/`) and Alpine apk.

The distribution (Debian or Ubuntu) and its release come from `etc/os-release` (or `usr/lib/os-release`)
of the same filesystem tree the database sits in: `<tree>/var/lib/dpkg/status` → `<tree>/etc/os-release`.
Both databases are read line by line, so their size costs no memory.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

from tianmu.assets._common import make_purl
from tianmu.assets.interface import Extracted, Extractor
from tianmu.core.errors import ParseError
from tianmu.core.models import Component, Location

__all__ = [
    "ApkInstalledExtractor",
    "DpkgStatusExtractor",
    "distro_ecosystem",
    "dpkg_paragraphs",
    "installed",
    "read_os_release",
]

_OS_RELEASE_LIMIT = 64 * 1024
_OS_RELEASE_PATHS = (("etc", "os-release"), ("usr", "lib", "os-release"))


def read_os_release(tree: Path) -> dict[str, str]:
    """KEY=value pairs of the tree's os-release; {} when absent or unreadable.

    A symlinked `etc/os-release` is not followed: in an unpacked image an absolute link would lead to
    the scanning host's own file. `usr/lib/os-release`, its usual target, is tried instead.
    """
    for candidate in (tree / "etc" / "os-release", tree / "usr" / "lib" / "os-release"):
        try:
            if candidate.is_symlink() or not candidate.is_file():
                continue
            with candidate.open(encoding="utf-8", errors="replace") as handle:
                text = handle.read(_OS_RELEASE_LIMIT)
        except OSError:
            continue
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if not sep or not re.fullmatch(r"[A-Z0-9_]+", key.strip()):
                continue
            try:
                words = shlex.split(value, comments=False)
            except ValueError:
                words = [value.strip().strip("\"'")]
            values[key.strip()] = " ".join(words)
        return values
    return {}


def distro_ecosystem(release: dict[str, str]) -> str:
    """The OSV ecosystem of a dpkg system's packages, from its os-release: Ubuntu, else Debian."""
    return "Ubuntu" if release.get("ID", "debian").lower() == "ubuntu" else "Debian"


def installed(fields: dict[str, str], default: str = "") -> bool:
    """A dpkg stanza whose package is installed: want install or hold, no error flag, installed."""
    status = fields.get("Status", default).split()
    return len(status) == 3 and status[1:] == ["ok", "installed"] and status[0] in ("install", "hold")


def dpkg_paragraphs(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """RFC 822-style stanzas as (line of the first field, fields); continuation lines are skipped."""
    fields: dict[str, str] = {}
    first = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                if fields:
                    yield first, fields
                fields = {}
                continue
            if line[0] in " \t":
                continue  # multi-line values (descriptions, conffiles) carry nothing we need
            key, sep, value = line.partition(":")
            if not sep:
                raise ParseError(f"expected 'Field: value', got {line.strip()[:60]!r}", str(path), number)
            if not fields:
                first = number
            fields.setdefault(key.strip(), value.strip())
    if fields:
        yield first, fields


def _tree_above(path: Path, depth: int) -> Path:
    return path.parents[depth] if len(path.parents) > depth else path.parent


class DpkgStatusExtractor(Extractor):
    name = "dpkg-status"
    ecosystem = "Debian"
    reads_beside = _OS_RELEASE_PATHS

    def matches(self, relpath: Path) -> bool:
        parts = relpath.parts
        if parts[-3:] == ("lib", "dpkg", "status"):
            return True
        # distroless images keep one stanza file per package in status.d/ (plus *.md5sums we ignore)
        return len(parts) >= 2 and parts[-2] == "status.d" and "." not in relpath.name

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        in_status_d = path.parent.name == "status.d"
        tree = _tree_above(path, 4 if in_status_d else 3)
        release = read_os_release(tree)
        distro_id = release.get("ID", "debian").lower()
        ecosystem = distro_ecosystem(release)
        version_id = release.get("VERSION_ID") or None
        distro = f"{distro_id}-{version_id}" if version_id else None
        try:
            for line, fields in dpkg_paragraphs(path):
                if not installed(fields, "install ok installed" if in_status_d else ""):
                    continue
                name, version = fields.get("Package"), fields.get("Version")
                if not name or not version:
                    raise ParseError("installed package without Package or Version", display_path, line)
                # `Source: openssl (1.1.1n-0+deb11u3)`: the source version may differ; we keep the binary's.
                source = fields.get("Source", "").split("(")[0].strip() or name
                arch = fields.get("Architecture")
                yield Component(
                    name=name,
                    version=version,
                    ecosystem=ecosystem,
                    purl=make_purl(
                        "deb",
                        "ubuntu" if ecosystem == "Ubuntu" else "debian",
                        name,
                        version,
                        {"arch": arch or "", "distro": distro or ""},
                    ),
                    location=Location(display_path, line),
                    source_name=source,
                    distro_release=version_id,
                )
        except ParseError as exc:
            exc.path = display_path
            raise


class ApkInstalledExtractor(Extractor):
    name = "apk-installed"
    ecosystem = "Alpine"
    reads_beside = _OS_RELEASE_PATHS

    def matches(self, relpath: Path) -> bool:
        return relpath.parts[-4:] == ("lib", "apk", "db", "installed")

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        release = read_os_release(_tree_above(path, 3))
        version_id = release.get("VERSION_ID") or None
        distro = f"alpine-{version_id}" if version_id else None
        # apk stanzas use one-letter keys (P: name, V: version, A: arch, o: origin) and no continuations.
        fields: dict[str, str] = {}
        first = 0
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, raw in enumerate(handle, 1):
                line = raw.rstrip("\n")
                if line.strip():
                    if len(line) < 2 or line[1] != ":":
                        raise ParseError(f"expected 'K:value', got {line[:60]!r}", display_path, number)
                    if not fields:
                        first = number
                    fields.setdefault(line[0], line[2:])
                    continue
                if fields:
                    yield self._component(fields, display_path, first, version_id, distro)
                fields = {}
        if fields:
            yield self._component(fields, display_path, first, version_id, distro)

    @staticmethod
    def _component(
        fields: dict[str, str], display: str, line: int, version_id: str | None, distro: str | None
    ) -> Component:
        name, version = fields.get("P"), fields.get("V")
        if not name or not version:
            raise ParseError("package entry without P: or V:", display, line)
        return Component(
            name=name,
            version=version,
            ecosystem="Alpine",
            purl=make_purl(
                "apk", "alpine", name, version, {"arch": fields.get("A", ""), "distro": distro or ""}
            ),
            location=Location(display, line),
            source_name=fields.get("o") or name,
            distro_release=version_id,
        )
