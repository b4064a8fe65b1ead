"""Helpers shared by the vulnerability tests (a uniquely named module: `conftest` names can collide)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tianmu.core.models import Asset, AssetKind, Component

FIXTURES = Path(__file__).parents[1] / "fixtures" / "vulns"
OSV_DIR = FIXTURES / "osv"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

ASSET = Asset("test-host", AssetKind.HOST)


def make_zip(target: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, blob in files.items():
            archive.writestr(name, blob)
    return target


def osv_files(*, yaml: bool = False) -> dict[str, bytes]:
    """The fixture records as zip members (JSON ones; the YAML one too when asked)."""
    pattern = "**/*" if yaml else "*.json"
    return {
        p.relative_to(OSV_DIR).as_posix(): p.read_bytes()
        for p in sorted(OSV_DIR.glob(pattern))
        if p.is_file()
    }


def comp(
    name: str,
    version: str,
    ecosystem: str = "PyPI",
    *,
    source_name: str | None = None,
    release: str | None = None,
) -> Component:
    purl = f"pkg:{ecosystem.lower()}/{name}@{version}"
    return Component(name, version, ecosystem, purl, source_name=source_name, distro_release=release)
