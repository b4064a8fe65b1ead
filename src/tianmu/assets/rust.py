"""Rust inventory: Cargo.lock.

Packages without a `source` are the workspace's own crates (the project itself) and are skipped;
registry and git packages are components.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tianmu.assets._common import load_toml, make_purl, toml_table_lines
from tianmu.assets.interface import Extracted, Extractor
from tianmu.core.models import Component, Location

__all__ = ["CargoLockExtractor"]

ECOSYSTEM = "crates.io"


class CargoLockExtractor(Extractor):
    name = "cargo-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "Cargo.lock"

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        data, text = load_toml(path, display_path)
        packages = data.get("package", [])
        if not isinstance(packages, list):
            return
        for package, line in zip(packages, toml_table_lines(text, len(packages)), strict=True):
            if not isinstance(package, dict) or not package.get("source"):
                continue
            name, version = str(package.get("name", "")), str(package.get("version", ""))
            if not name or not version:
                continue
            yield Component(
                name=name,
                version=version,
                ecosystem=ECOSYSTEM,
                purl=make_purl("cargo", None, name, version),
                location=Location(display_path, line),
            )
