"""Python inventory: requirements files, poetry/Pipfile/uv/pdm lockfiles, installed distributions.

Only exact pins (`==`, `===`) become components; anything else a requirements file names is reported as
Unresolved, because a vulnerability verdict on `django>=3` would be a guess.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tianmu.assets._common import (
    LineIndex,
    load_json,
    load_toml,
    make_purl,
    read_text,
    toml_table_lines,
    version_problem,
)
from tianmu.assets.interface import DEFAULT_MAX_BYTES, Extracted, Extractor
from tianmu.core.errors import InputError
from tianmu.core.models import Component, Location, Unresolved
from tianmu.core.walk import refuse_named

__all__ = [
    "InstalledPythonExtractor",
    "PdmLockExtractor",
    "PipfileLockExtractor",
    "PoetryLockExtractor",
    "RequirementsExtractor",
    "UvLockExtractor",
    "installed_site",
]

ECOSYSTEM = "PyPI"
_MAX_INCLUDE_DEPTH = 16
_SITE_DIRS = ("site-packages", "dist-packages")


def _in_installed_tree(relpath: Path) -> bool:
    """Inside a site-packages/dist-packages folder: a requirements file or lockfile there is part of an
    installed package's payload (`docs/requirements.txt`), not software installed on the system."""
    return any(part in _SITE_DIRS for part in relpath.parts[:-1])


def installed_site(path: str) -> str | None:
    """The folder that holds an installed distribution's metadata (`.../site-packages`), from the
    location of its `METADATA`/`PKG-INFO` or single-file `*.egg-info`; None for other files. One
    distribution in one folder is one component, however many metadata it left (dist-info and
    egg-info of the same version)."""
    parts = Path(path).parts
    for index in range(len(parts) - 1, -1, -1):
        if parts[index].endswith((".dist-info", ".egg-info")):
            return Path(*parts[:index]).as_posix() if index else "."
    return None


def _component(name: str, version: str, path: str, line: int | None, direct: bool | None) -> Component:
    return Component(
        name=name,
        version=version,
        ecosystem=ECOSYSTEM,
        purl=make_purl("pypi", None, name, version),
        location=Location(path, line),
        direct=direct,
    )


# --- requirements files -------------------------------------------------------------------------

# pip's own rule: `#` starts a comment only at the line start or after whitespace (so `#egg=` survives).
_COMMENT = re.compile(r"(^|\s+)#.*$")
_PER_REQ_OPTION = re.compile(
    r"\s+--(hash|global-option|install-option|config-settings|config_settings)(=|\s+)\S+"
)
_INCLUDE = re.compile(r"^(--requirement|--constraint|-r|-c)(?:\s*=\s*|\s+|(?=[^\s-]))(\S+)")
_URLISH = re.compile(r"^(\w+\+)?[a-z]+://|^\.{0,2}/|^\w:[\\/]")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first physical line, logical line) with `\\` continuations joined and comments removed."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        line = _COMMENT.sub("", raw)
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            yield start, joined
    if pending:
        joined = " ".join(part.strip() for part in pending).strip()
        if joined:
            yield start, joined


@dataclass(slots=True)
class _Parsed:
    items: list[Extracted] = field(default_factory=list)
    unpinned: list[tuple[Unresolved, str]] = field(default_factory=list)
    """Unpinned requirements with their canonical name, resolvable later by a constraints file."""
    constraints: dict[str, tuple[str, str, Location]] = field(default_factory=dict)
    """Canonical name → (name as written, pinned version, where pinned)."""


def _pin(req: Requirement) -> str | None:
    specs = list(req.specifier)
    if (
        req.url is None
        and len(specs) == 1
        and specs[0].operator in ("==", "===")
        and "*" not in specs[0].version
    ):
        return specs[0].version
    return None


def _display_join(display: str, target: str) -> str:
    return Path(os.path.normpath(Path(display).parent / target)).as_posix()


class RequirementsExtractor(Extractor):
    """`requirements*.txt`, and any `*.txt` directly in a `requirements/` folder."""

    name = "python-requirements"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        filename = relpath.name.lower()
        if not filename.endswith(".txt") or _in_installed_tree(relpath):
            return False
        return filename.startswith("requirements") or relpath.parent.name.lower() == "requirements"

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        parsed = _Parsed()
        root = _tree_root(path, display_path)
        self._parse(path, display_path, parsed, chain=(), constraint=False, root=root)
        yield from parsed.items
        for unresolved, key in parsed.unpinned:
            pinned = parsed.constraints.get(key)
            if pinned is None:
                yield unresolved
            else:
                _name, version, where = pinned
                yield _component(unresolved.name, version, where.path, where.line, True)

    def _parse(
        self, path: Path, display: str, out: _Parsed, chain: tuple[Path, ...], constraint: bool, root: str
    ) -> None:
        text = read_text(path, display)
        chain = (*chain, path.resolve())
        for line_no, line in _logical_lines(text):
            where = Location(display, line_no)
            include = _INCLUDE.match(line)
            if include:
                self._include(include.group(1), include.group(2), path, display, where, out, (chain, root))
                continue
            if constraint:
                self._constraint(line, where, out)
                continue
            if line.startswith("-e") or line.startswith("--editable"):
                target = line.split(None, 1)[-1] if " " in line else line[2:]
                out.items.append(
                    Unresolved(
                        _guess_name(target), ECOSYSTEM, line, where, "editable install: no version pin"
                    )
                )
                continue
            if line.startswith("-"):
                continue  # global options: --index-url, --find-links, --pre, --require-hashes...
            self._requirement(_PER_REQ_OPTION.sub("", " " + line).strip(), where, out)

    def _include(
        self,
        flag: str,
        target: str,
        path: Path,
        display: str,
        where: Location,
        out: _Parsed,
        within: tuple[tuple[Path, ...], str],
    ) -> None:
        """Read an included file: inside the scanned tree, a regular file of bounded size, no loop."""
        chain, root = within
        is_constraint = flag in ("-c", "--constraint")
        if _URLISH.match(target) and "://" in target:
            out.items.append(InputError(f"remote include not followed: {target}", where.path, where.line))
            return
        child = path.parent / target
        child_display = _display_join(display, target)
        if child.resolve() in chain:
            out.items.append(InputError(f"include loop: {target} is already being read", *_at(where)))
            return
        if len(chain) >= _MAX_INCLUDE_DEPTH:
            out.items.append(InputError(f"includes nested too deeply at {target}", *_at(where)))
            return
        refused = _refuse_include(child, root)
        if refused is not None:
            out.items.append(InputError(f"included file {target} not read: {refused}", *_at(where)))
            return
        try:
            self._parse(child, child_display, out, chain, constraint=is_constraint, root=root)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            out.items.append(InputError(f"cannot read included file {target}: {reason}", *_at(where)))
        except InputError as exc:
            out.items.append(exc)

    def _constraint(self, line: str, where: Location, out: _Parsed) -> None:
        try:
            req = Requirement(_PER_REQ_OPTION.sub("", " " + line).strip())
        except InvalidRequirement:
            return  # a constraints file only ever refines; an odd line there names no component
        version = _pin(req)
        if version is not None:
            out.constraints.setdefault(canonicalize_name(req.name), (req.name, version, where))

    def _requirement(self, text: str, where: Location, out: _Parsed) -> None:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            reason = f"not a valid requirement: {exc}"
            if _URLISH.match(text):
                reason = "direct URL or path: no version pin"
            out.items.append(Unresolved(_guess_name(text), ECOSYSTEM, text, where, reason))
            return
        version = _pin(req)
        if version is not None:
            out.items.append(_component(req.name, version, where.path, where.line, True))
            return
        if req.url is not None:
            reason = "direct URL reference: no version pin"
        elif not req.specifier:
            reason = "no version specifier"
        else:
            reason = f"not pinned to one version ({req.specifier})"
        out.unpinned.append(
            (Unresolved(req.name, ECOSYSTEM, text, where, reason), canonicalize_name(req.name))
        )


def _tree_root(path: Path, display: str) -> str:
    """The real path of the scanned tree's root: `path` less its display path (which is relative to the
    root); for a file named on its own (display: its name), its folder."""
    absolute = Path(os.path.abspath(path))
    depth = len(Path(display).parts)
    if depth and absolute.parts[-depth:] == Path(display).parts:
        return os.path.realpath(absolute.parents[depth - 1])
    return os.path.realpath(absolute.parent)


def _refuse_include(child: Path, root: str) -> str | None:
    """Why an include is not read: it leads out of the scanned tree (`-r ../../etc/passwd` would put
    the host's files in the report), or is no regular file (`-r /dev/zero` never ends), or is too big."""
    real = os.path.realpath(child)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        return "outside the scanned tree"
    try:
        info = os.stat(real)
    except OSError:
        return None  # reading it says what is wrong ("cannot read included file")
    refused = refuse_named(Path(real))
    if refused is not None:
        return refused
    if info.st_size > DEFAULT_MAX_BYTES:
        return f"larger than {DEFAULT_MAX_BYTES} bytes"
    return None


def _at(where: Location) -> tuple[str, int | None]:
    return where.path, where.line


def _guess_name(text: str) -> str:
    egg = re.search(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)", text)
    if egg:
        return egg.group(1)
    if _URLISH.match(text):
        # an sdist or wheel URL names the project in its file name: `Jinja2-2.10.tar.gz`
        filename = text.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        project = re.match(r"([A-Za-z0-9][A-Za-z0-9._]*?)-\d", filename)
        return project.group(1) if project else filename
    word = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", text)
    return word.group(0) if word else text


# --- lockfiles ----------------------------------------------------------------------------------


def _locked_version(package: dict[str, Any], display: str, line: int | None) -> str | InputError | None:
    """The version of a lockfile package: None when it has none, an InputError (located) when it is no
    version (`version = { ... }`, a number, a string with spaces) instead of a made-up component."""
    version = package.get("version")
    if version is None or version == "":
        return None
    problem = version_problem(version)
    if problem is not None:
        return InputError(f"package {package['name']!r}: {problem}: not a component", display, line)
    return str(version)


def _toml_packages(path: Path, display: str) -> Iterator[tuple[dict[str, Any], int | None]]:
    data, text = load_toml(path, display)
    packages = data.get("package", [])
    if not isinstance(packages, list):
        return
    lines = toml_table_lines(text, len(packages))
    for package, line in zip(packages, lines, strict=True):
        if isinstance(package, dict) and isinstance(package.get("name"), str):
            yield package, line


class PoetryLockExtractor(Extractor):
    name = "poetry-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "poetry.lock" and not _in_installed_tree(relpath)

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        for package, line in _toml_packages(path, display_path):
            name, version = package["name"], _locked_version(package, display_path, line)
            source = package.get("source") or {}
            if not isinstance(source, dict):
                source = {}
            if isinstance(version, InputError):
                yield version
            elif source.get("type") in ("directory", "file"):
                yield Unresolved(
                    name,
                    ECOSYSTEM,
                    f"{name} @ {source.get('url', '')}",
                    Location(display_path, line),
                    "installed from a local path",
                )
            elif version:
                yield _component(name, version, display_path, line, None)


class UvLockExtractor(Extractor):
    name = "uv-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "uv.lock" and not _in_installed_tree(relpath)

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        for package, line in _toml_packages(path, display_path):
            name, version = package["name"], _locked_version(package, display_path, line)
            source = package.get("source") or {}
            if not isinstance(source, dict):
                source = {}
            if isinstance(version, InputError):
                yield version
                continue
            if "editable" in source or "virtual" in source:
                continue  # the project (or a workspace member) itself, not a dependency
            if "path" in source or "directory" in source:
                target = source.get("path") or source.get("directory")
                yield Unresolved(
                    name,
                    ECOSYSTEM,
                    f"{name} @ {target}",
                    Location(display_path, line),
                    "installed from a local path",
                )
            elif version:
                yield _component(name, version, display_path, line, None)


class PdmLockExtractor(Extractor):
    name = "pdm-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "pdm.lock" and not _in_installed_tree(relpath)

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        for package, line in _toml_packages(path, display_path):
            version = _locked_version(package, display_path, line)
            if isinstance(version, InputError):
                yield version
            elif version:
                yield _component(package["name"], version, display_path, line, None)


class PipfileLockExtractor(Extractor):
    name = "pipfile-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "Pipfile.lock" and not _in_installed_tree(relpath)

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        data, text = load_json(path, display_path)
        if not isinstance(data, dict):
            raise InputError("Pipfile.lock is not a JSON object", display_path, 1)
        index = LineIndex(text)
        for section in ("default", "develop"):
            packages = data.get(section)
            if not isinstance(packages, dict):
                continue
            index.cursor = index.offset_of(rf'"{section}"\s*:')
            for name, info in packages.items():
                line = index.find_key(name)
                version = info.get("version", "") if isinstance(info, dict) else ""
                if isinstance(version, str) and version.startswith("=="):
                    yield _component(name, version.lstrip("="), display_path, line, None)
                else:
                    where = Location(display_path, line)
                    keys = ("path", "file", "git")
                    origin = next((str(info[k]) for k in keys if isinstance(info, dict) and k in info), "")
                    yield Unresolved(
                        name,
                        ECOSYSTEM,
                        f"{name} @ {origin}" if origin else name,
                        where,
                        "no pinned version in lockfile",
                    )


# --- installed distributions --------------------------------------------------------------------


class InstalledPythonExtractor(Extractor):
    """`*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and single-file `*.egg-info` (legacy distutils
    installs: pycairo, pycups on Debian) inside site-packages or dist-packages (a scan that points at
    such a folder itself sees it under its name: `match_path`)."""

    name = "python-installed"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        parent = relpath.parent.name
        if (relpath.name == "METADATA" and parent.endswith(".dist-info")) or (
            relpath.name == "PKG-INFO" and parent.endswith(".egg-info")
        ):
            above = relpath.parts[:-2]
        elif relpath.name.endswith(".egg-info"):
            above = relpath.parts[:-1]  # the collector offers files only: this one is the metadata
        else:
            return False
        return any(part in _SITE_DIRS for part in above)

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        name = version = None
        name_line = None
        # Only the header block matters; METADATA bodies (long descriptions) can be big.
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                if key == "Name" and name is None:
                    name, name_line = value.strip(), number
                elif key == "Version" and version is None:
                    version = value.strip()
                if number > 10_000:
                    break
        if not name or not version:
            raise InputError("distribution metadata without Name and Version headers", display_path, 1)
        yield _component(name, version, display_path, name_line, None)
