"""Software inventory of a directory tree or a single file: `scan_inventory`.

The walk is a generator over `os.scandir` (one directory listing in memory at a time), never follows
symlinked directories (so symlink loops cannot trap it), and skips VCS and cache folders. Each file is
offered to the extractors by name; a problem with one file becomes an InputError in the result and the
walk goes on. Nothing an input contains should surface as a traceback.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from tianmu.assets.interface import Extractor, InventoryResult, match_path
from tianmu.assets.owners import link_distro_packages
from tianmu.assets.python import installed_site
from tianmu.assets.registry import default_extractors
from tianmu.core.errors import InputError
from tianmu.core.models import Component, Unresolved
from tianmu.core.walk import walk_tree

__all__ = ["SKIP_DIRS", "InventoryReader", "scan_inventory"]

SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".tox", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)


class InventoryReader:
    """Runs the extractors over files one at a time and gathers one `InventoryResult`.

    Exact duplicates (same ecosystem, name, version and file) are reported once. When an extractor fails
    part-way through a file, what it yielded before the failure is kept and the failure is reported.
    """

    def __init__(
        self,
        root: str,
        extractors: Sequence[Extractor] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.extractors = list(default_extractors() if extractors is None else extractors)
        self.progress = progress
        self.result = InventoryResult(root=root)
        self._components: set[tuple[str, str, str, str | None]] = set()
        self._unresolved: set[tuple[str, str, str, str, int | None]] = set()
        self._errors: set[str] = set()

    def claims(self, match_path: Path) -> bool | None:
        """True when an extractor reads files of this very name (or beside them); None when only
        extractors whose name rules match any file do (a suffixless file may be a Go binary, or a log:
        its content decides); False when none does."""
        parts = match_path.parts
        maybe = False
        for x in self.extractors:
            if any(parts[-len(end) :] == end for end in x.reads_beside):
                return True
            if x.matches(match_path):
                if not x.generic_names:
                    return True
                maybe = True
        return None if maybe else False

    def read(self, path: Path, display: str, match_path: Path) -> None:
        try:
            if _scan_file(path, display, match_path, self.extractors, self.progress, self._add):
                self.result.files_read += 1
        except FileNotFoundError:
            self.result.vanished += 1

    def error(self, error: InputError) -> None:
        self.result.errors.append(error)

    def finish(self, base: Path | None) -> InventoryResult:
        """The result, with the Python distributions dpkg installed linked to their package (`base`:
        the folder the locations are relative to; None when there is none)."""
        if base is not None:
            components, errors = link_distro_packages(self.result.components, base)
            self.result.components = components
            for error in errors:
                self._add(error, error.path or "")
        return self.result

    def _add(self, item: Component | Unresolved | InputError, display: str) -> None:
        result = self.result
        if isinstance(item, Component):
            where = item.location.path if item.location else None
            site = installed_site(where) if where and item.ecosystem == "PyPI" else None
            # An installed distribution is one component per folder, whichever metadata it left.
            name = canonicalize_name(item.name) if site is not None else item.name
            key = (item.ecosystem, name, item.version, f"installed in {site}" if site is not None else where)
            if key not in self._components:
                self._components.add(key)
                result.components.append(item)
        elif isinstance(item, Unresolved):
            ukey = (item.ecosystem, item.name, item.requirement, item.location.path, item.location.line)
            if ukey not in self._unresolved:
                self._unresolved.add(ukey)
                result.unresolved.append(item)
        else:
            if not item.path:
                item.path = display
            if str(item) not in self._errors:
                self._errors.add(str(item))
                result.errors.append(item)


def scan_inventory(
    root: Path,
    *,
    progress: Callable[[str], None] | None = None,
    extractors: Sequence[Extractor] | None = None,
) -> InventoryResult:
    """Inventory the software under `root` (a directory or one file), walking it on its own.

    Locations are relative to `root` (posix separators); for a single file, its name. `progress` is
    called with that relative path for every file an extractor reads. (`tianmu assess` does not call
    this: the road walks the target once and gives the `InventoryEngine` its files.)
    """
    root = Path(root)
    reader = InventoryReader(str(root), extractors, progress)
    if not root.exists() and not root.is_symlink():
        reader.error(InputError("no such file or directory", str(root)))
        return reader.result
    if root.is_dir():
        walk: Iterator[tuple[Path, str, Path] | InputError] = _walk(root)
    else:
        walk = iter([(root, root.name, Path(os.path.abspath(root)))])
    for entry in walk:
        if isinstance(entry, InputError):
            reader.error(entry)
            continue
        reader.read(*entry)
    return reader.finish(root if root.is_dir() else root.parent)


def _walk(root: Path) -> Iterator[tuple[Path, str, Path] | InputError]:
    """(path, display path, path for name matching), in `walk_tree` order; problems as InputErrors."""
    real_root = os.path.realpath(root)
    problems: list[InputError] = []

    def failed(relpath: str, exc: OSError) -> None:
        problems.append(InputError(f"cannot list directory: {exc.strerror or exc}", relpath))

    def skipped(parent: str, name: str) -> bool:
        return name in SKIP_DIRS or (parent == "node_modules" and name == ".cache")

    for item, relpath in walk_tree(root, on_error=failed, skip_dir=skipped):
        yield from problems
        problems.clear()
        try:
            if not item.is_file(follow_symlinks=True):
                continue
            # A symlinked file is read only if it stays inside the tree: in an unpacked image, an
            # absolute link would otherwise read the scanning host's own files.
            if item.is_symlink() and not _inside(os.path.realpath(item.path), real_root):
                continue
        except OSError:
            continue  # vanished or unreadable entry metadata: nothing to inventory there
        yield Path(item.path), relpath, match_path(root, relpath)
    yield from problems


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _scan_file(
    path: Path,
    display: str,
    match_path: Path,
    extractors: Sequence[Extractor],
    progress: Callable[[str], None] | None,
    add: Callable[[Component | Unresolved | InputError, str], None],
) -> bool:
    """Run the matching extractors on one file; True when at least one read it without error."""
    matched = [x for x in extractors if x.matches(match_path)]
    # A file an extractor claims by a specific name (`var/lib/dpkg/status`), or reads beside its own
    # (`etc/os-release`), is that extractor's: the extractors whose names match any file (suffixless,
    # `.so`) would only open it again to say no.
    specific = [x for x in matched if not x.generic_names]
    parts = match_path.parts
    beside = any(parts[-len(end) :] == end for x in extractors for end in x.reads_beside)
    matched = specific if specific or beside else matched
    if not matched:
        return False
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return False
        head = b""
        sniff = max((x.sniff_bytes for x in matched), default=0)
        if sniff:
            with path.open("rb") as handle:
                head = handle.read(sniff)
    except FileNotFoundError:
        raise  # gone since the walk listed it: the reader counts it
    except OSError as exc:
        add(InputError(f"cannot read file: {exc.strerror or exc}", display), display)
        return False
    runnable = [x for x in matched if not x.sniff_bytes or x.accepts(head[: x.sniff_bytes])]
    if not runnable:
        return False
    if progress is not None:
        progress(display)
    succeeded = False
    for extractor in runnable:
        if extractor.max_bytes is not None and info.st_size > extractor.max_bytes:
            add(
                InputError(
                    f"file too large for {extractor.name} "
                    f"({info.st_size} bytes; limit {extractor.max_bytes})",
                    display,
                ),
                display,
            )
            continue
        produced = _run(extractor, path, display, add)
        # A sniffed binary that holds nothing (an ELF without Go build info) is not an inventory file.
        if produced is not None and (produced or not extractor.sniff_bytes):
            succeeded = True
    return succeeded


def _run(
    extractor: Extractor,
    path: Path,
    display: str,
    add: Callable[[Component | Unresolved | InputError, str], None],
) -> int | None:
    """Number of items the extractor yielded, or None when it failed (the failure is added)."""
    count = 0
    try:
        for item in extractor.extract(path, display):
            add(item, display)
            count += 1
    except InputError as exc:
        exc.path = display if not exc.path or exc.path == str(path) else exc.path
        add(exc, display)
    except FileNotFoundError:
        if count == 0:
            raise  # gone before the extractor read anything: the reader counts it
        add(InputError("file vanished while being read", display), display)
    except OSError as exc:
        add(InputError(f"cannot read file: {exc.strerror or exc}", display), display)
    except UnicodeDecodeError:
        add(InputError("not valid UTF-8 text", display), display)
    except (MemoryError, RecursionError) as exc:
        add(
            InputError(
                f"{extractor.name}: input too large or too deeply nested ({type(exc).__name__})", display
            ),
            display,
        )
    except Exception as exc:  # an extractor bug must not end the scan; report it against the file
        add(InputError(f"{extractor.name} failed: {type(exc).__name__}: {exc}", display), display)
    else:
        return count
    return None
