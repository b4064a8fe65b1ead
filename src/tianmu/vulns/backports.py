"""Language packages the distribution installed: upstream ranges do not apply as they stand.

A Python package in `dist-packages` that dpkg owns (`Component.distro_package`, e.g.
`Debian/python3-cryptography@38.0.4-3+deb12u1`) is the distribution's build: Debian fixes flaws by
backporting patches without moving the upstream version, so the PyPI advisory's "fixed in 41.0.6"
says nothing about `38.0.4-3+deb12u1`. The distribution's own advisories know. The rule:

- **the distribution's advisories are imported** (`osv:Debian`) **and its package is in the inventory**
  (the dpkg database was read): the PyPI matches of the component are dropped — the Debian package is
  checked by its own component against the distribution's ranges, with the backported fixes — and a
  note names the packages so handled;
- **otherwise** (no `osv:Debian`, or the owning package was not inventoried): the PyPI finding is kept
  but marked, `data["backport_note"] = "upstream range; the distribution (Debian python3-cryptography
  38.0.4-3+deb12u1) may have backported the fix"`, and a note counts such findings.

Dropping rather than keeping both avoids reporting one flaw twice, once with a fix version that does not
apply; the note keeps the decision visible.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from tianmu.core.models import Component, Finding
from tianmu.vulns.osv import split_ecosystem

__all__ = ["Owner", "apply_backports", "owner_of"]

_NAMES_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Owner:
    """The OS package that owns a language package."""

    ecosystem: str
    """The distribution's OSV ecosystem (`Debian`), without a release suffix."""
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.ecosystem} {self.name} {self.version}"


def owner_of(component: Component) -> Owner | None:
    """The owner named by `distro_package` (`Ecosystem/name@version`), None when absent or malformed."""
    text = component.distro_package
    if not text or "/" not in text or "@" not in text:
        return None
    ecosystem, _slash, rest = text.partition("/")
    name, _at, version = rest.rpartition("@")
    if not ecosystem.strip() or not name.strip() or not version.strip():
        return None
    return Owner(split_ecosystem(ecosystem.strip())[0], name.strip(), version.strip())


def backport_note(owner: Owner) -> str:
    return f"upstream range; the distribution ({owner}) may have backported the fix"


def apply_backports(
    findings: Sequence[Finding], components: Sequence[Component], imported: Collection[str]
) -> tuple[list[Finding], list[str]]:
    """(findings to report, notes) under the module's rule; `imported`: ecosystems with advisories."""
    inventoried = {
        (split_ecosystem(c.ecosystem)[0], c.name, c.version)
        for c in components
        if c.distro_package is None and c.version
    }
    kept: list[Finding] = []
    dropped: dict[tuple[str, str, Owner], int] = {}
    marked: dict[tuple[str, str, Owner], int] = {}
    for finding in findings:
        component = finding.component
        owner = owner_of(component) if component is not None else None
        if component is None or owner is None:
            kept.append(finding)
            continue
        key = (component.name, component.version, owner)
        if owner.ecosystem in imported and (owner.ecosystem, owner.name, owner.version) in inventoried:
            dropped[key] = dropped.get(key, 0) + 1
            continue
        finding.data["backport_note"] = backport_note(owner)
        marked[key] = marked.get(key, 0) + 1
        kept.append(finding)
    notes = []
    if dropped:
        count = sum(dropped.values())
        notes.append(
            f"vulnerability: {count} upstream advisor{'ies' if count != 1 else 'y'} not applied to "
            f"{_packages(dropped)} the distribution installed, checked as its own packages instead "
            f"(their fixes are backported): {_names(dropped)}"
        )
    if marked:
        count = sum(marked.values())
        ecosystems = ", ".join(f"osv:{e}" for e in sorted({owner.ecosystem for _n, _v, owner in marked}))
        notes.append(
            f"vulnerability: {count} finding{'s' if count != 1 else ''} on {_packages(marked)} the "
            f"distribution installed use upstream ranges (the distribution may have backported the fix; "
            f"import {ecosystems} and assess with its package database to check them as its packages): "
            f"{_names(marked)}"
        )
    return kept, notes


def _packages(groups: dict[tuple[str, str, Owner], int]) -> str:
    return f"{len(groups)} package{'s' if len(groups) != 1 else ''}"


def _names(groups: dict[tuple[str, str, Owner], int]) -> str:
    names = [f"{name} {version} ({owner})" for name, version, owner in sorted(groups, key=str)]
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")
