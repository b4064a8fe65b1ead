"""Components from Package URLs (the SBOM readers' common ground): purl type → OSV ecosystem and name.

A purl that would give a wrong component silently (`%zz`, a version with spaces, a length no package
manager writes) is a located InputError; one of a type Tianmu has no advisories for is Unresolved.
"""

from __future__ import annotations

import re

from packageurl import PackageURL

from tianmu.assets._common import version_problem
from tianmu.assets.interface import Extracted
from tianmu.core.errors import InputError
from tianmu.core.models import Component, Location, Unresolved

__all__ = ["MAX_PURL", "component_from_purl"]

MAX_PURL = 4096
"""Longest Package URL read; a longer one is an attacker's or a bug's, not a package's."""

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
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _at(location: Location) -> tuple[str, int | None]:
    return location.path, location.line


def component_from_purl(text: str, location: Location, fallback_version: object = None) -> Extracted:
    """A Component from a Package URL, or Unresolved when its type or version is not usable.

    `fallback_version` is the document's own version field, as read (not always a string)."""
    if len(text) > MAX_PURL:
        return InputError(
            f"package URL {text[:60]!r}... longer than {MAX_PURL} characters: not a component",
            *_at(location),
        )
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
    version: object = purl.version or fallback_version
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
    if problem is not None or not isinstance(version, str):
        return InputError(f"package URL {text[:200]!r}: {problem}: not a component", *_at(location))
    # The parsed purl is already normalised; building another is needed only to add the version.
    canonical = (
        purl
        if purl.version
        else PackageURL(
            type=ptype,
            namespace=namespace,
            name=purl.name,
            version=version,
            qualifiers=quals,
            subpath=purl.subpath,
        )
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
