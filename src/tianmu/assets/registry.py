"""The built-in inventory extractors, by stable name (used in `--json` output and to switch one off)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tianmu.assets.golang import GoBinaryExtractor, GoModExtractor
from tianmu.assets.interface import Extracted, Extractor
from tianmu.assets.java import GradleLockExtractor, PomExtractor
from tianmu.assets.javascript import NpmLockExtractor, PnpmLockExtractor, YarnLockExtractor
from tianmu.assets.ospkg import ApkInstalledExtractor, DpkgStatusExtractor
from tianmu.assets.php import ComposerLockExtractor
from tianmu.assets.python import (
    InstalledPythonExtractor,
    PdmLockExtractor,
    PipfileLockExtractor,
    PoetryLockExtractor,
    RequirementsExtractor,
    UvLockExtractor,
)
from tianmu.assets.ruby import GemfileLockExtractor
from tianmu.assets.rust import CargoLockExtractor
from tianmu.assets.sbom import CycloneDxExtractor, SbomLimits, SpdxExtractor
from tianmu.core.errors import InputError

__all__ = ["ALIASES", "EXTRACTORS", "default_extractors", "forced_extractor"]

EXTRACTORS: dict[str, type[Extractor]] = {
    cls.name: cls
    for cls in (
        RequirementsExtractor,
        PoetryLockExtractor,
        PipfileLockExtractor,
        UvLockExtractor,
        PdmLockExtractor,
        InstalledPythonExtractor,
        NpmLockExtractor,
        YarnLockExtractor,
        PnpmLockExtractor,
        GoModExtractor,
        GoBinaryExtractor,
        CargoLockExtractor,
        ComposerLockExtractor,
        GemfileLockExtractor,
        PomExtractor,
        GradleLockExtractor,
        DpkgStatusExtractor,
        ApkInstalledExtractor,
        CycloneDxExtractor,
        SpdxExtractor,
    )
}


ALIASES = {
    "requirements": "python-requirements",
    "package-lock": "npm-lock",
    "pom": "maven-pom",
    "cyclonedx": "cyclonedx-json",
    "spdx": "spdx-json",
}
"""Short names `--format` also takes (as pip-audit's `-r` and osv-scanner's `-L requirements.txt:F`)."""


class _Forced(Extractor):
    """An extractor the user chose for one file (`tianmu vulns FILE --format NAME`): it claims the file
    whatever its name, and reads it as the chosen extractor would."""

    def __init__(self, inner: Extractor) -> None:
        self.inner = inner
        self.name = inner.name
        self.ecosystem = inner.ecosystem
        self.max_bytes = inner.max_bytes
        self.reads_beside = inner.reads_beside

    def matches(self, relpath: Path) -> bool:
        return True

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        return self.inner.extract(path, display_path)


def forced_extractor(name: str) -> Extractor:
    """The extractor `name` (or an alias) made to read whatever file it is given; InputError naming
    the known formats for an unknown one."""
    cls = EXTRACTORS.get(ALIASES.get(name, name))
    if cls is None:
        known = ", ".join([*ALIASES, *EXTRACTORS])
        raise InputError(f"--format {name!r}: not a format Tianmu reads (known: {known})")
    return _Forced(cls())


def default_extractors(
    disabled: frozenset[str] | set[str] = frozenset(), *, sbom_limits: SbomLimits | None = None
) -> list[Extractor]:
    """One instance of every built-in extractor, minus those named in `disabled`; the SBOM readers
    under `sbom_limits` (settings read at the edge), else their defaults."""
    unknown = set(disabled) - EXTRACTORS.keys()
    if unknown:
        raise ValueError(f"unknown extractor(s): {', '.join(sorted(unknown))}")
    return [
        cls(sbom_limits) if cls in (CycloneDxExtractor, SpdxExtractor) else cls()
        for name, cls in EXTRACTORS.items()
        if name not in disabled
    ]
