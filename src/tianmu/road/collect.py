"""Collect once: the target is walked once and each file is classified once.

`collect(root, classifier)` walks a directory with `os.scandir` (one listing in memory at a time, never
following symlinked directories, so a link loop cannot trap it), or takes one file, and gives every
regular file a `CollectedFile` with its classes:

- `ANY` for every regular file that is not a symlink (malware scanning, filename indicators);
- one primary class, the first that applies: `PACKAGE` when the inventory claims the file (lockfiles,
  manifests, package databases and the files they need, SBOMs, binaries), else `LOG` when its name
  says it may be a log (content decides later, in the one parse pass), else `ARCHIVE`, `SOURCE` or
  `CONFIG` by suffix. A requirements.txt is a lockfile, not a log: one classification, one reader.

A symlinked file is collected (as `PACKAGE` only) when it stays inside the tree: in an unpacked image an
absolute link would otherwise make the inventory read the scanning host's own files. Folders of version
control and tool caches are left out per class (the inventory still reads `node_modules` and `.venv`;
log search does not), as each engine did on its own before. The walk's rules (`tianmu.core.walk`: pseudo
file systems never entered, one file system unless asked, `--exclude`, a trusted `.tianmuignore`) are
the same as `tianmu malware scan`'s and `detect`'s; what they left out is in `Collection.notes()`. What
the ignore file left out is still collected as `ANY` only when an engine wants every file: it hides
files from the inventory and the log pass, never from malware scanning (only `--exclude` does). A path
named on its own that is a FIFO, socket or device, or lies on a pseudo file system, is an error, never
opened.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.assets.interface import match_path
from tianmu.core.engine import CollectedFile, FileClass
from tianmu.core.walk import WalkRules, WalkSkips, refuse_named, walk_marked, walk_tree
from tianmu.readers.sources import LOG_SKIP_DIRS, is_log_name

__all__ = ["Classifier", "Collection", "collect"]

_INVENTORY_SKIP = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".tox", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)

_ARCHIVE_SUFFIXES = frozenset({".zip", ".jar", ".war", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".apk"})
_SOURCE_SUFFIXES = frozenset(
    {".py", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".go", ".rs", ".java", ".kt", ".c", ".h", ".cc", ".cpp"}
    | {".hpp", ".cs", ".php", ".rb", ".sh", ".pl", ".swift", ".scala", ".lua", ".sql"}
)
_CONFIG_SUFFIXES = frozenset(
    {".conf", ".cfg", ".ini", ".toml", ".yaml", ".yml", ".xml", ".properties", ".env", ".service"}
)


@dataclass(frozen=True, slots=True)
class Classifier:
    """Decides a file's primary class from its path relative to the root."""

    claims_package: Callable[[Path], bool | None]
    """The inventory's claim (its extractors' name rules and the files they read beside them): True for
    its files, None for files only content can tell (a suffixless file may be a Go binary or a log)."""
    all_logs: bool = False
    """Every file is a log candidate (`tianmu detect DIR`, `intel match DIR`: the user named the logs)."""

    def classes(
        self, relpath: str, *, symlink: bool, single: bool, root: Path | None = None
    ) -> set[FileClass]:
        """Classes besides `ANY`: the primary class, and `PACKAGE` when the inventory may want the file.

        The inventory judges a walked file by its path under the root's own name (`match_path`: a walk
        of a `site-packages` folder itself), a file named on its own by its absolute path."""
        parts = relpath.split("/")
        inventoried = not _INVENTORY_SKIP.intersection(parts[:-1]) and not _in_npm_cache(parts)
        matched = match_path(root, relpath) if root is not None else Path(relpath)
        claim = self.claims_package(matched) if inventoried else False
        if claim:
            return {FileClass.PACKAGE}
        primary = self.primary(relpath, symlink=symlink, single=single)
        return ({primary} if primary else set()) | ({FileClass.PACKAGE} if claim is None else set())

    def primary(self, relpath: str, *, symlink: bool, single: bool) -> FileClass | None:
        parts = relpath.split("/")
        match_path = Path(relpath)
        if symlink:
            return None
        if single or (
            not LOG_SKIP_DIRS.intersection(parts[:-1]) and (self.all_logs or is_log_name(parts[-1]))
        ):
            return FileClass.LOG
        suffix = match_path.suffix.lower()
        if suffix in _ARCHIVE_SUFFIXES:
            return FileClass.ARCHIVE
        if suffix in _SOURCE_SUFFIXES:
            return FileClass.SOURCE
        if suffix in _CONFIG_SUFFIXES:
            return FileClass.CONFIG
        return None


def _in_npm_cache(parts: list[str]) -> bool:
    return any(a == "node_modules" and b == ".cache" for a, b in itertools.pairwise(parts[:-1]))


@dataclass(slots=True)
class Collection:
    """What one walk found."""

    root: Path
    files: list[CollectedFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Folders or files that could not be listed or read, as `path: reason`."""
    skips: WalkSkips = field(default_factory=WalkSkips)
    """What the walk's rules left out (pseudo and other file systems, excluded, devices/FIFOs/sockets)."""

    @property
    def special(self) -> int:
        """Devices, FIFOs and sockets passed over."""
        return self.skips.special

    def notes(self) -> list[str]:
        """What was not read, for the job's notes."""
        return self.skips.notes()


def collect(
    root: Path,
    classifier: Classifier,
    rules: WalkRules | None = None,
    wanted: frozenset[FileClass] | None = None,
) -> Collection:
    """Walk `root` once (a directory, or one file) and classify every regular file.

    `wanted`: the classes the job's engines read (None: all); a walked file of none of them is not
    kept, so `tianmu vulns /` holds its few thousand package files, not every file of the system."""
    found = Collection(root)
    refused = refuse_named(root, rules.mounts if rules else None)
    if refused is not None:
        found.errors.append(f"{root}: {refused}")
        return found
    if root.is_dir():
        every_file = wanted is None or FileClass.ANY in wanted
        for item in _walk(root, classifier, found, rules, every_file=every_file):
            if wanted is None or not wanted.isdisjoint(item.classes):
                found.files.append(item)
        found.errors.extend(found.skips.errors)
        return found
    try:
        info = os.stat(root)
    except OSError as exc:
        found.errors.append(f"{root}: cannot read: {exc.strerror or exc}")
        return found
    # One named file: the extractors judge it by its full path (`.../var/lib/dpkg/status`).
    classes = {FileClass.ANY} | classifier.classes(os.path.abspath(root), symlink=False, single=True)
    found.files.append(CollectedFile(str(root), root.name, info.st_size, frozenset(classes)))
    return found


def _walk(
    root: Path, classifier: Classifier, found: Collection, rules: WalkRules | None, *, every_file: bool
) -> Iterator[CollectedFile]:
    """The collected files; with `every_file`, those the ignore file left out too, as `ANY` alone."""
    real_root = os.path.realpath(root)
    # The same few class sets recur for every file: one frozenset each, not one per file.
    pool: dict[frozenset[FileClass], frozenset[FileClass]] = {}

    def unlisted(relpath: str, exc: OSError) -> None:
        found.errors.append(f"{relpath}: cannot list directory: {exc.strerror or exc}")

    if every_file:
        walked = walk_marked(root, on_error=unlisted, rules=rules, skips=found.skips)
    else:  # nothing reads every file: what the ignore file left out is not even entered
        plain = walk_tree(root, on_error=unlisted, rules=rules, skips=found.skips)
        walked = ((item, relpath, False) for item, relpath in plain)
    for item, relpath, ignored in walked:
        try:
            collected = (
                _ignored_file(item, found)
                if ignored
                else _file(item, relpath, (root, real_root), classifier, found)
            )
        except FileNotFoundError:
            found.skips.vanished += 1
            continue
        except OSError as exc:
            found.errors.append(f"{relpath}: cannot read: {exc.strerror or exc}")
            continue
        if collected is not None:
            size, classes = collected
            yield CollectedFile(item.path, relpath, size, pool.setdefault(classes, classes))


def _file(
    item: os.DirEntry[str],
    relpath: str,
    roots: tuple[Path, str],
    classifier: Classifier,
    found: Collection,
) -> tuple[int, frozenset[FileClass]] | None:
    """(size, classes) of a walked file, None when it is not collected."""
    root, real_root = roots
    if item.is_symlink():
        if not item.is_file(follow_symlinks=True) or not _inside(os.path.realpath(item.path), real_root):
            return None
        classes = classifier.classes(relpath, symlink=True, single=False, root=root)
        if not classes:
            return None
        return item.stat(follow_symlinks=True).st_size, frozenset(classes)
    info = item.stat(follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode):
        found.skips.special += 1
        return None
    classes = {FileClass.ANY} | classifier.classes(relpath, symlink=False, single=False, root=root)
    return info.st_size, frozenset(classes)


def _ignored_file(item: os.DirEntry[str], found: Collection) -> tuple[int, frozenset[FileClass]] | None:
    """(size, {ANY}) of a file the ignore file left out: malware scanning still sees it."""
    info = item.stat(follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        found.skips.special += 1
        return None
    found.skips.ignored_scanned += 1
    return info.st_size, _ANY_ONLY


_ANY_ONLY = frozenset({FileClass.ANY})


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
