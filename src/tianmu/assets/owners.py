"""Python distributions owned by the OS package manager: the dpkg package that installed each one.

A `dist-packages` distribution installed by dpkg (`cryptography-38.0.4.dist-info` of
python3-cryptography 38.0.4-3+deb12u1) is the distribution's build, with the distribution's backported
fixes: upstream PyPI ranges alone would misjudge it. `link_distro_packages` sets its
`Component.distro_package` (`Debian/python3-cryptography@38.0.4-3+deb12u1`) when the package's
metadata file is listed in a package's `var/lib/dpkg/info/<package>.list`.

Which dpkg database: that of the tree the distribution lies in, the nearest folder at or above its
`dist-packages` folder holding `var/lib/dpkg/status`. For a whole system or an unpacked image it is
under the target. When the target is a site folder itself (`tianmu inventory
/usr/lib/python3/dist-packages`), it is above the target: on the live root, the live `/var/lib/dpkg`.
It is consulted, because the files are the very ones dpkg installed there and its word on them is
exact; paths are compared relative to that tree, so a folder copied elsewhere (`/tmp/x/usr/lib/...`)
never matches the live system's lists.

It stays cheap on a walk of `/`: nothing is read unless a distribution lies in a `dist-packages`
folder outside `/usr/local` (pip's, never dpkg's). Then only the paths sought are kept (no reverse map
of every file of the system): the lists of `python*`/`pypy*` packages are read first, the others only
for what is still unowned, each list under `OwnerLimits`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from tianmu.assets.interface import DEFAULT_MAX_BYTES
from tianmu.assets.ospkg import distro_ecosystem, dpkg_paragraphs, installed, read_os_release
from tianmu.assets.python import installed_site
from tianmu.core.errors import InputError
from tianmu.core.models import Component

__all__ = ["OwnerLimits", "link_distro_packages"]

_STATUS = ("var", "lib", "dpkg", "status")
_INFO = ("var", "lib", "dpkg", "info")
_FIRST = ("python", "pypy")


@dataclass(frozen=True, slots=True)
class OwnerLimits:
    """What finding the owners may read; a list over the limit is left out and said."""

    max_list_bytes: int = 16 << 20
    """Largest `info/<package>.list` read (the biggest of a Debian system are ~1 MB)."""
    max_lists: int = 100_000
    """`.list` files read per database (a full desktop system has ~5,000)."""
    max_status_bytes: int = DEFAULT_MAX_BYTES
    """Largest `status` read for the owners' versions."""


@dataclass(slots=True)
class _Tree:
    """One dpkg tree and the metadata files sought in it (as dpkg writes them: absolute, bytes)."""

    root: str
    sought: dict[bytes, list[int]]
    """Installed path → indexes of the components whose metadata it is."""


def link_distro_packages(
    components: Sequence[Component], base: Path, limits: OwnerLimits | None = None
) -> tuple[list[Component], list[InputError]]:
    """`components` with `distro_package` set for those dpkg installed; the problems met.

    `base` is the folder the components' location paths are relative to (the scanned root)."""
    limits = limits or OwnerLimits()
    out = list(components)
    errors: list[InputError] = []
    for tree in _trees(out, base):
        owners = _owners(tree, limits, errors)
        if not owners:
            continue
        versions = _versions(Path(tree.root, *_STATUS), set(owners.values()), limits, errors)
        ecosystem = distro_ecosystem(read_os_release(Path(tree.root)))
        for path, package in owners.items():
            version = versions.get(package)
            if version is None:
                continue  # listed, but not installed (or the status could not be read: said)
            for index in tree.sought[path]:
                out[index] = replace(out[index], distro_package=f"{ecosystem}/{package}@{version}")
    return out, errors


def _trees(components: Sequence[Component], base: Path) -> list[_Tree]:
    """The dpkg trees holding the `dist-packages` distributions among `components`."""
    real_base = os.path.realpath(base)
    tree_of: dict[str, str | None] = {}
    trees: dict[str, _Tree] = {}
    for index, component in enumerate(components):
        where = component.location.path if component.location else None
        if component.ecosystem != "PyPI" or not where or component.distro_package:
            continue
        site = installed_site(where)
        if site is None:
            continue
        # The walk never enters a symlinked folder: below the root, the display path is the real one.
        site_dir = os.path.normpath(os.path.join(real_base, site))
        if os.path.basename(site_dir) != "dist-packages":
            continue
        if site_dir not in tree_of:
            tree_of[site_dir] = _dpkg_tree(site_dir)
        root = tree_of[site_dir]
        if root is None:
            continue
        installed_path = "/" + os.path.relpath(os.path.normpath(os.path.join(real_base, where)), root)
        if installed_path.startswith("/usr/local/"):
            continue
        tree = trees.setdefault(root, _Tree(root, {}))
        tree.sought.setdefault(os.fsencode(installed_path), []).append(index)
    return list(trees.values())


def _dpkg_tree(folder: str) -> str | None:
    """The nearest folder at or above `folder` that holds a dpkg status file (a regular file: in an
    unpacked image, a symlink would lead to the scanning host's own)."""
    current = folder
    while True:
        status = os.path.join(current, *_STATUS)
        if os.path.isfile(status) and not os.path.islink(status):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _lists(info: str, limits: OwnerLimits, errors: list[InputError]) -> list[tuple[str, str]]:
    """(package, path) of the tree's `.list` files, regular files only (a FIFO would block the read
    for ever, a symlink lead out of the tree): python and pypy packages first."""
    if os.path.islink(info):
        raise OSError(0, "a symlink, not followed")
    names: list[str] = []
    with os.scandir(info) as entries:
        for entry in entries:
            if entry.name.endswith(".list") and entry.is_file(follow_symlinks=False):
                if len(names) == limits.max_lists:
                    errors.append(
                        InputError(f"more than {limits.max_lists} file lists: the rest not read", info)
                    )
                    break
                names.append(entry.name)
    names.sort(key=lambda name: (not name.startswith(_FIRST), name))
    # Multi-Arch: same packages name their files `package:arch.list`.
    return [(name[: -len(".list")].split(":", 1)[0], os.path.join(info, name)) for name in names]


def _open_regular(path: str) -> BinaryIO | None:
    """A regular file opened for reading, never through a symlink nor blocking on a FIFO swapped in
    since the listing; None for anything else."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return open(descriptor, "rb")


def _owners(tree: _Tree, limits: OwnerLimits, errors: list[InputError]) -> dict[bytes, str]:
    """Installed path → owning package, for the paths sought; stops once every one is found."""
    remaining = set(tree.sought)
    owners: dict[bytes, str] = {}
    info = os.path.join(tree.root, *_INFO)
    try:
        lists = _lists(info, limits, errors)
    except OSError as exc:
        errors.append(InputError(f"cannot list the dpkg file lists: {exc.strerror or exc}", info))
        return owners
    for package, path in lists:
        if not remaining:
            break
        try:
            opened = _open_regular(path)
            if opened is None:
                continue
            with opened as handle:
                if os.fstat(handle.fileno()).st_size > limits.max_list_bytes:
                    errors.append(
                        InputError(f"file list larger than {limits.max_list_bytes} bytes: not read", path)
                    )
                    continue
                for line in handle:
                    entry = line.rstrip(b"\n")
                    if entry in remaining:
                        owners[entry] = package
                        remaining.discard(entry)
        except OSError:
            continue  # a list gone or unreadable: its package's files stay unowned
    return owners


def _versions(
    status: Path, packages: set[str], limits: OwnerLimits, errors: list[InputError]
) -> dict[str, str]:
    """Version of each of `packages` installed, from the dpkg status file."""
    versions: dict[str, str] = {}
    try:
        if status.stat().st_size > limits.max_status_bytes:
            errors.append(
                InputError(f"larger than {limits.max_status_bytes} bytes: owners not read", str(status))
            )
            return versions
        for _line, fields in dpkg_paragraphs(status):
            name = fields.get("Package", "")
            if name in packages and installed(fields) and fields.get("Version"):
                versions[name] = fields["Version"]
    except InputError as exc:
        exc.path = str(status)
        errors.append(exc)
    except OSError as exc:
        errors.append(InputError(f"cannot read the dpkg status: {exc.strerror or exc}", str(status)))
    return versions
