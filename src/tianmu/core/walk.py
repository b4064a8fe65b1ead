"""The one way Tianmu walks a folder tree: `walk_tree`.

A generator over `os.scandir` (one directory listing in memory at a time), depth first, each folder
sorted by name with its files before its subfolders, never following symlinked folders (a link loop
cannot trap it) and never entering the pseudo file systems of a live system (`/proc`, `/sys`, `/dev`
when the root is `/`). The road's collector walks a target with it once; `scan_inventory`, for callers
of the inventory alone, walks with it too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["walk_tree"]

_SYSTEM_PSEUDO = frozenset({"proc", "sys", "dev"})


def walk_tree(
    root: Path,
    *,
    on_error: Callable[[str, OSError], None],
    skip_dir: Callable[[str, str], bool] | None = None,
) -> Iterator[tuple[os.DirEntry[str], str]]:
    """(entry, path relative to `root`) of everything under `root` that is not a folder.

    `skip_dir(parent relpath, name)` leaves a folder out; `on_error(relpath, error)` hears of a folder
    that cannot be listed ("." for the root), and the walk goes on. An entry whose type cannot be read
    is yielded as it is: the caller's own look at it (a stat) says what is wrong.
    """
    at_system_root = os.path.realpath(root) == os.path.abspath(os.sep)
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        directory, rel = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            on_error(rel or ".", exc)
            continue
        subdirs: list[tuple[str, str]] = []
        for item in entries:
            relpath = f"{rel}/{item.name}" if rel else item.name
            try:
                is_dir = item.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if not is_dir:
                yield item, relpath
            elif not (at_system_root and not rel and item.name in _SYSTEM_PSEUDO) and not (
                skip_dir is not None and skip_dir(rel, item.name)
            ):
                subdirs.append((item.path, relpath))
        stack.extend(reversed(subdirs))
