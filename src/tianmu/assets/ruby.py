"""Ruby inventory: Gemfile.lock (gems from rubygems `GEM` and `GIT` sections; `PATH` gems are the project)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tianmu.assets._common import make_purl, read_text
from tianmu.assets.interface import Extracted, Extractor
from tianmu.core.models import Component, Location

__all__ = ["GemfileLockExtractor"]

ECOSYSTEM = "RubyGems"
_SPEC = re.compile(r"^ {4}([A-Za-z0-9_.-]+) \(([^)\s]+)\)\s*$")
_DEPENDENCY = re.compile(r"^ {2}([A-Za-z0-9_.-]+)(!| |$)")
# Platform-specific gems are written `nokogiri (1.13.1-x86_64-linux)`; the platform is not version.
_PLATFORM = re.compile(
    r"-(x86|x64|i[3-6]86|arm|aarch64|universal|java|jruby|mswin|mingw|darwin|linux|ruby|dalvik|wasm)\S*$"
)


class GemfileLockExtractor(Extractor):
    name = "gemfile-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name in ("Gemfile.lock", "gems.locked")

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        section = ""
        specs: list[tuple[str, str, str | None, int]] = []
        direct: set[str] = set()
        for number, line in enumerate(read_text(path, display_path).splitlines(), 1):
            if line and not line[0].isspace():
                section = line.strip()
                continue
            if section in ("GEM", "GIT"):
                found = _SPEC.match(line)
                if found:
                    name, version = found.groups()
                    suffix = _PLATFORM.search(version)
                    platform = suffix.group(0)[1:] if suffix else None
                    if suffix:
                        version = version[: suffix.start()]
                    specs.append((name, version, platform, number))
            elif section == "DEPENDENCIES":
                dep = _DEPENDENCY.match(line)
                if dep:
                    direct.add(dep.group(1))
        for name, version, platform, number in specs:
            yield Component(
                name=name,
                version=version,
                ecosystem=ECOSYSTEM,
                purl=make_purl("gem", None, name, version, {"platform": platform} if platform else None),
                location=Location(display_path, number),
                direct=(name in direct) if direct else None,
            )
