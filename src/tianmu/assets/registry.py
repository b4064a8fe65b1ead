"""The built-in inventory extractors, by stable name (used in `--json` output and to switch one off)."""

from __future__ import annotations

from tianmu.assets.golang import GoBinaryExtractor, GoModExtractor
from tianmu.assets.interface import Extractor
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
from tianmu.assets.sbom import CycloneDxExtractor, SpdxExtractor

__all__ = ["EXTRACTORS", "default_extractors"]

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


def default_extractors(disabled: frozenset[str] | set[str] = frozenset()) -> list[Extractor]:
    """One instance of every built-in extractor, minus those named in `disabled`."""
    unknown = set(disabled) - EXTRACTORS.keys()
    if unknown:
        raise ValueError(f"unknown extractor(s): {', '.join(sorted(unknown))}")
    return [cls() for name, cls in EXTRACTORS.items() if name not in disabled]
