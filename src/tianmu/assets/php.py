"""PHP inventory: composer.lock (`packages` and `packages-dev`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from tianmu.assets._common import LineIndex, load_json, make_purl
from tianmu.assets.interface import Extracted, Extractor
from tianmu.core.errors import ParseError
from tianmu.core.models import Component, Location, Unresolved

__all__ = ["ComposerLockExtractor"]

ECOSYSTEM = "Packagist"


class ComposerLockExtractor(Extractor):
    name = "composer-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "composer.lock"

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        data, text = load_json(path, display_path)
        if not isinstance(data, dict):
            raise ParseError("composer.lock is not a JSON object", display_path, 1)
        index = LineIndex(text)
        for section in ("packages", "packages-dev"):
            packages = data.get(section)
            if not isinstance(packages, list):
                continue
            index.cursor = index.offset_of(rf'"{section}"\s*:')
            for package in packages:
                if not isinstance(package, dict) or not isinstance(package.get("name"), str):
                    continue
                name = package["name"]
                line = index.find(r'"name"\s*:\s*' + re.escape(json.dumps(name)))
                # Tags are often written `v1.2.3`; advisories use `1.2.3`.
                version = re.sub(r"^v(?=\d)", "", str(package.get("version", "")))
                where = Location(display_path, line)
                if not version or version.startswith("dev-") or version.endswith("-dev"):
                    yield Unresolved(name, ECOSYSTEM, f"{name}:{version}", where, "a development branch")
                    continue
                vendor, _, short = name.rpartition("/")
                yield Component(
                    name=name,
                    version=version,
                    ecosystem=ECOSYSTEM,
                    purl=make_purl("composer", vendor or None, short, version),
                    location=where,
                )
