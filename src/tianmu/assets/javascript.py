"""JavaScript inventory: npm package-lock.json (v1, v2, v3), yarn.lock (classic and berry), pnpm-lock.yaml."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tianmu.assets._common import (
    LineIndex,
    load_json,
    make_purl,
    read_text,
    yaml_compose,
    yaml_get,
    yaml_mapping_items,
    yaml_scalar,
)
from tianmu.assets.interface import Extracted, Extractor
from tianmu.core.errors import ParseError
from tianmu.core.models import Component, Location, Unresolved

__all__ = ["NpmLockExtractor", "PnpmLockExtractor", "YarnLockExtractor"]

ECOSYSTEM = "npm"
# A registry version starts with a digit; anything else (file:, git URLs, github:user/repo) is not one.
_VERSIONISH = re.compile(r"^v?\d+(\.[0-9A-Za-z-]+)*([+-][0-9A-Za-z.+-]*)?$")
_LOCAL_PROTOCOLS = ("file:", "link:", "portal:", "workspace:")
_PNPM_V5_KEY = re.compile(r"^/((?:@[^/]+/)?[^/@]+)/([^/]+)$")


def _component(name: str, version: str, path: str, line: int | None, direct: bool | None) -> Component:
    namespace, _, short = name.rpartition("/") if name.startswith("@") else ("", "", name)
    return Component(
        name=name,
        version=version,
        ecosystem=ECOSYSTEM,
        purl=make_purl("npm", namespace or None, short, version),
        location=Location(path, line),
        direct=direct,
    )


def _split_descriptor(descriptor: str) -> tuple[str, str]:
    """`@babel/core@^7.0.0` → (`@babel/core`, `^7.0.0`); the scope's `@` is not the separator."""
    at = descriptor.find("@", 1)
    if at < 0:
        return descriptor, ""
    return descriptor[:at], descriptor[at + 1 :]


class NpmLockExtractor(Extractor):
    """package-lock.json and npm-shrinkwrap.json."""

    name = "npm-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name in ("package-lock.json", "npm-shrinkwrap.json")

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        data, text = load_json(path, display_path)
        if not isinstance(data, dict):
            raise ParseError("lockfile is not a JSON object", display_path, 1)
        index = LineIndex(text)
        packages = data.get("packages")
        if isinstance(packages, dict):
            index.cursor = index.offset_of(r'"packages"\s*:')
            yield from self._packages(packages, index, display_path)
        elif isinstance(data.get("dependencies"), dict):
            index.cursor = index.offset_of(r'"dependencies"\s*:')
            yield from self._dependencies(data["dependencies"], index, display_path)

    def _packages(self, packages: dict[str, Any], index: LineIndex, display: str) -> Iterator[Extracted]:
        """lockfileVersion 2 and 3: flat `node_modules/...` keys."""
        root = packages.get("")
        direct_names: set[str] | None = None
        if isinstance(root, dict):
            direct_names = set()
            for field in ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies"):
                if isinstance(root.get(field), dict):
                    direct_names.update(root[field])
        for key, info in packages.items():
            line = index.find_key(key) if key else None
            if not key or not isinstance(info, dict) or "node_modules/" not in key:
                continue  # the root project and workspace member folders are the project itself
            if info.get("link"):
                continue  # a symlink to a workspace folder, listed again under its own path
            installed_as = key.rsplit("node_modules/", 1)[1]
            name = str(info.get("name") or installed_as)
            version = str(info.get("version", ""))
            where = Location(display, line)
            if not _VERSIONISH.match(version):
                yield Unresolved(
                    name,
                    ECOSYSTEM,
                    f"{name}@{version or info.get('resolved', '')}",
                    where,
                    "not a registry version",
                )
                continue
            direct = None
            if direct_names is not None:
                direct = key == f"node_modules/{installed_as}" and installed_as in direct_names
            yield _component(name, version, display, line, direct)

    def _dependencies(self, deps: dict[str, Any], index: LineIndex, display: str) -> Iterator[Extracted]:
        """lockfileVersion 1: nested `dependencies`; visited in document order to keep the cursor valid."""
        for name, info in deps.items():
            line = index.find_key(name)
            if not isinstance(info, dict):
                continue
            version = str(info.get("version", ""))
            real_name = name
            if version.startswith("npm:"):  # an alias: "foo": {"version": "npm:bar@1.0.0"}
                real_name, version = _split_descriptor(version[4:])
            if _VERSIONISH.match(version):
                yield _component(real_name, version, display, line, None)
            else:
                yield Unresolved(
                    real_name,
                    ECOSYSTEM,
                    f"{name}@{version}",
                    Location(display, line),
                    "not a registry version",
                )
            nested = info.get("dependencies")
            if isinstance(nested, dict):
                yield from self._dependencies(nested, index, display)


class YarnLockExtractor(Extractor):
    name = "yarn-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "yarn.lock"

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        text = read_text(path, display_path)
        if re.search(r"^__metadata:", text, re.MULTILINE):
            yield from self._berry(text, display_path)
        else:
            yield from self._classic(text, display_path)

    def _classic(self, text: str, display: str) -> Iterator[Extracted]:
        """Yarn v1: `"a@^1", a@^1.2:` headers, then indented `version "1.2.3"`."""
        header: tuple[int, list[str]] | None = None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line[0].isspace():
                if not line.rstrip().endswith(":"):
                    raise ParseError(f"unexpected line in yarn.lock: {line.strip()[:60]!r}", display, number)
                descriptors = [d.strip().strip('"') for d in line.rstrip()[:-1].split(",")]
                header = (number, descriptors)
                continue
            found = re.match(r'^\s+version:?\s+"?([^"\s]+)"?\s*$', line)
            if found and header is not None:
                yield self._entry(header[1], found.group(1), display, header[0])
                header = None

    def _entry(self, descriptors: list[str], version: str, display: str, line: int) -> Extracted:
        name, spec = _split_descriptor(descriptors[0])
        if spec.startswith("npm:"):  # alias: "foo@npm:bar@^1"
            name, _ = _split_descriptor(spec[4:])
        if spec.startswith(_LOCAL_PROTOCOLS):
            return Unresolved(name, ECOSYSTEM, descriptors[0], Location(display, line), "local package")
        return _component(name, version, display, line, None)

    def _berry(self, text: str, display: str) -> Iterator[Extracted]:
        """Yarn 2+: YAML, `"name@npm:^1": {version, resolution}`; workspaces are the project itself."""
        for key, line, value in yaml_mapping_items(yaml_compose(text, display)):
            if key == "__metadata":
                continue
            version = yaml_scalar(yaml_get(value, "version"))
            resolution = yaml_scalar(yaml_get(value, "resolution")) or key.split(",")[0].strip()
            name, protocol = _split_descriptor(resolution)
            if protocol.startswith("workspace:"):
                continue
            if not version:
                raise ParseError(f"entry {key!r} has no version", display, line)
            if not protocol.startswith(_LOCAL_PROTOCOLS):  # npm:, patch:, git and tarball URLs
                yield _component(name, version, display, line, None)
            else:
                yield Unresolved(name, ECOSYSTEM, resolution, Location(display, line), "local package")


class PnpmLockExtractor(Extractor):
    name = "pnpm-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name in ("pnpm-lock.yaml", "pnpm-lock.yml")

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        root = yaml_compose(read_text(path, display_path), display_path)
        if root is not None and not isinstance(root, yaml.MappingNode):
            raise ParseError("pnpm lockfile is not a mapping", display_path, 1)
        direct = self._direct_names(root)
        for key, line, value in yaml_mapping_items(yaml_get(root, "packages")):
            parsed = self._parse_key(key)
            if parsed is None:
                name = yaml_scalar(yaml_get(value, "name"))
                version = yaml_scalar(yaml_get(value, "version"))
                if not name or not version:
                    yield Unresolved(
                        name or key, ECOSYSTEM, key, Location(display_path, line), "not a registry package"
                    )
                    continue
                parsed = (name, version)
            name, version = parsed
            yield _component(name, version, display_path, line, (name in direct) if direct else None)

    @staticmethod
    def _parse_key(key: str) -> tuple[str, str] | None:
        """v5 `/name/1.2.3_peer@1`, v6 `/name@1.2.3(peer@1)`, v9 `name@1.2.3(peer@1)`."""
        key = key.split("(", 1)[0]
        v5 = _PNPM_V5_KEY.match(key)
        if v5:  # the version is the last path segment; peers are appended with `_`
            name, version = v5.group(1), v5.group(2).split("_", 1)[0]
        elif key.startswith("/"):
            name, version = _split_descriptor(key[1:])
        else:
            name, version = _split_descriptor(key)
        if not name or not _VERSIONISH.match(version):
            return None
        return name, version

    @staticmethod
    def _direct_names(root: yaml.Node | None) -> set[str]:
        """Names the project lists itself: `importers` (workspaces, v6+) or top-level fields (v5)."""
        holders: list[yaml.Node | None] = [root]
        holders.extend(value for _k, _l, value in yaml_mapping_items(yaml_get(root, "importers")))
        names: set[str] = set()
        for holder in holders:
            for field in ("dependencies", "devDependencies", "optionalDependencies"):
                names.update(key for key, _l, _v in yaml_mapping_items(yaml_get(holder, field)))
        return names
