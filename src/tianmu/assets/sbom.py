"""SBOM inventory: CycloneDX JSON and SPDX 2.x JSON, read through each component's Package URL.

SBOM file names are generic (`bom.json`), so after the name match the scanner lets these extractors
look at the first bytes: only documents that declare themselves CycloneDX or SPDX are read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from tianmu.assets._common import LineIndex, load_json, version_problem
from tianmu.assets.interface import Extracted, Extractor
from tianmu.core.errors import InputError, ParseError
from tianmu.core.models import Component, Location, Unresolved

__all__ = ["CycloneDxExtractor", "SpdxExtractor", "component_from_purl"]

_SNIFF = 64 * 1024
_ECOSYSTEMS = {
    "pypi": "PyPI",
    "npm": "npm",
    "golang": "Go",
    "cargo": "crates.io",
    "composer": "Packagist",
    "gem": "RubyGems",
    "maven": "Maven",
    "apk": "Alpine",
    "nuget": "NuGet",
    "hex": "Hex",
    "pub": "Pub",
    "cran": "CRAN",
    "swift": "SwiftURL",
}
# Component types that are software packages; an operating system or a plain file without a purl
# is not a missed dependency.
_PACKAGE_TYPES = {"library", "framework", "application", None}


def _sbom_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".cdx.json", ".spdx.json", ".bom.json", ".sbom.json")) or (
        lower.endswith(".json") and (lower.startswith(("sbom", "bom")) or lower in ("bom.json",))
    )


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _at(location: Location) -> tuple[str, int | None]:
    return location.path, location.line


def component_from_purl(text: str, location: Location, fallback_version: str | None = None) -> Extracted:
    """A Component from a Package URL, or Unresolved when its type or version is not usable."""
    if _BAD_ESCAPE.search(text):
        # packageurl keeps `%zz` as it is: the name or version would be wrong, silently.
        return InputError(
            f"invalid package URL {text[:200]!r}: a % not followed by two hex digits", *_at(location)
        )
    try:
        purl = PackageURL.from_string(text)
    except ValueError as exc:
        return Unresolved(text, "", text, location, f"invalid package URL: {exc}")
    ptype = str(purl.type)
    namespace: str | None = purl.namespace or None
    quals: dict[str, str] = dict(purl.qualifiers or {})
    version: str | None = purl.version or fallback_version
    source_name = release = None
    if ptype == "deb":
        ecosystem = "Ubuntu" if (namespace or "").lower() == "ubuntu" else "Debian"
        source_name = (quals.get("upstream") or "").split("(")[0].strip() or str(purl.name)
        distro = quals.get("distro", "")
        release = distro.split("-", 1)[1] if "-" in distro else None
    elif ptype == "apk":
        ecosystem = "Alpine"
        source_name = quals.get("upstream") or str(purl.name)
        distro = quals.get("distro", "")
        release = distro.split("-", 1)[1] if "-" in distro else None
    elif ptype in _ECOSYSTEMS:
        ecosystem = _ECOSYSTEMS[ptype]
    else:
        return Unresolved(str(purl.name), "", text, location, f"package type {ptype!r} is not supported")
    if ptype == "maven":
        name = f"{namespace}:{purl.name}" if namespace else str(purl.name)
    elif ptype in ("npm", "golang", "composer") and namespace:
        name = f"{namespace}/{purl.name}"
    else:
        name = str(purl.name)
    if not version:
        return Unresolved(name, ecosystem, text, location, "no version in the SBOM")
    problem = version_problem(version)
    if problem is not None:
        return InputError(f"package URL {text[:200]!r}: {problem}: not a component", *_at(location))
    canonical = PackageURL(
        type=ptype,
        namespace=namespace,
        name=purl.name,
        version=version,
        qualifiers=quals,
        subpath=purl.subpath,
    ).to_string()
    return Component(
        name=name,
        version=version,
        ecosystem=ecosystem,
        purl=str(canonical),
        location=location,
        source_name=source_name,
        distro_release=release,
    )


def _index(text: str) -> LineIndex:
    # Some serialisers (PHP's json_encode) write `/` as `\/`; undo it so purls are found verbatim.
    # The replacement never touches a newline, so line numbers stay right.
    return LineIndex(text.replace("\\/", "/"))


def _line_of(index: LineIndex, key: str, value: str) -> int | None:
    """Line of `"key": "value"`: forward from the previous hit (document order), else from the top.

    The value is found with a plain substring search and the key checked just before it, so the cost
    stays linear in the document for pretty-printed and minified files alike.
    """
    quoted = json.dumps(value)
    key_before = re.compile(rf'"{re.escape(key)}"\s*:\s*$')
    text = index.text
    for start in (index.cursor, 0):
        at = text.find(quoted, start)
        while at >= 0:
            if key_before.search(text, max(0, at - 64), at):
                index.cursor = at + 1
                return index.line_at(at)
            at = text.find(quoted, at + 1)
    return None


class CycloneDxExtractor(Extractor):
    name = "cyclonedx-json"
    ecosystem = ""
    sniff_bytes = _SNIFF

    def matches(self, relpath: Path) -> bool:
        return _sbom_name(relpath.name)

    def accepts(self, head: bytes) -> bool:
        return re.search(rb'"bomFormat"\s*:\s*"CycloneDX"', head) is not None

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        data, text = load_json(path, display_path)
        if not isinstance(data, dict) or data.get("bomFormat") != "CycloneDX":
            raise ParseError("not a CycloneDX JSON document", display_path, 1)
        yield from self._walk(data.get("components"), _index(text), display_path, depth=0)

    def _walk(self, components: Any, index: LineIndex, display: str, depth: int) -> Iterator[Extracted]:
        if not isinstance(components, list) or depth > 64:
            return
        for item in components:
            if not isinstance(item, dict):
                continue
            purl = item.get("purl")
            if isinstance(purl, str) and purl:
                yield component_from_purl(
                    purl, Location(display, _line_of(index, "purl", purl)), item.get("version")
                )
            elif item.get("type") in _PACKAGE_TYPES and item.get("name"):
                name = str(item["name"])
                line = _line_of(index, "name", name)
                yield Unresolved(
                    name,
                    "",
                    f"{name}@{item.get('version', '')}",
                    Location(display, line),
                    "no package URL in the SBOM",
                )
            yield from self._walk(item.get("components"), index, display, depth + 1)


class SpdxExtractor(Extractor):
    name = "spdx-json"
    ecosystem = ""
    sniff_bytes = _SNIFF

    def matches(self, relpath: Path) -> bool:
        return _sbom_name(relpath.name)

    def accepts(self, head: bytes) -> bool:
        return re.search(rb'"spdxVersion"\s*:\s*"SPDX-2', head) is not None

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        data, text = load_json(path, display_path)
        if not isinstance(data, dict) or not str(data.get("spdxVersion", "")).startswith("SPDX-2"):
            raise ParseError("not an SPDX 2 JSON document", display_path, 1)
        index = _index(text)
        described = set(data.get("documentDescribes") or [])
        for package in data.get("packages") or []:
            if not isinstance(package, dict):
                continue
            refs = [
                ref.get("referenceLocator")
                for ref in package.get("externalRefs") or []
                if isinstance(ref, dict) and ref.get("referenceType") == "purl"
            ]
            purls = [ref for ref in refs if isinstance(ref, str) and ref]
            for purl in purls[:1]:  # several purls name the same package; the first is canonical
                location = Location(display_path, _line_of(index, "referenceLocator", purl))
                yield component_from_purl(purl, location, package.get("versionInfo"))
            if not purls and package.get("SPDXID") not in described and package.get("name"):
                name = str(package["name"])
                line = _line_of(index, "name", name)
                yield Unresolved(
                    name,
                    "",
                    f"{name}@{package.get('versionInfo', '')}",
                    Location(display_path, line),
                    "no package URL in the SBOM",
                )
