"""Python distributions owned by the OS package manager: the dpkg or apk package that installed each.

A `dist-packages` distribution installed by dpkg (`cryptography-38.0.4.dist-info` of
python3-cryptography 38.0.4-3+deb12u1) is the distribution's build, with the distribution's backported
fixes: upstream PyPI ranges alone would misjudge it. `link_distro_packages` sets its
`Component.distro_package` (`Debian/python3-cryptography@38.0.4-3+deb12u1`) when the package's
metadata file is listed in a package's `var/lib/dpkg/info/<package>.list`. Alpine's apk does the same
for `site-packages` (`Alpine/py3-cryptography@41.0.3-r0`), from the `F:`/`R:` lines of
`lib/apk/db/installed`.

Which database: that of the tree the distribution lies in, the nearest folder at or above its site
folder holding `var/lib/dpkg/status` (or `lib/apk/db/installed`). For a whole system or an unpacked
image it is under the target. When the target is a site folder itself (`tianmu inventory
/usr/lib/python3/dist-packages`), it is above the target: on the live root, the live `/var/lib/dpkg`.
It is consulted, because the files are the very ones the package manager installed there and its word
on them is exact; paths are compared relative to that tree, so a folder copied elsewhere
(`/tmp/x/usr/lib/...`) never matches the live system's lists.

It stays cheap on a walk of `/`: nothing is read unless a distribution lies in the package manager's
own Python folder (under `/usr/lib/`: never `/usr/local`, pip's, nor a venv). Then only the paths
sought are kept (no reverse map of every file of the system): the dpkg lists of `python*`/`pypy*`
packages are read first, the others only for what is still unowned, each under `OwnerLimits`; the
apk database is one file, read once.
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
_APK_DB = ("lib", "apk", "db", "installed")
# Where each package manager puts the Python distributions it installs (pip's own go elsewhere:
# /usr/local on Debian, and a venv's site-packages is under no package manager's tree paths).
_SITE_OF = {"dpkg": "dist-packages", "apk": "site-packages"}
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
    """One package-managed tree and the metadata files sought in it (absolute in the tree, bytes)."""

    root: str
    manager: str
    """`dpkg` or `apk`."""
    sought: dict[bytes, list[int]]
    """Installed path → indexes of the components whose metadata it is."""


def link_distro_packages(
    components: Sequence[Component], base: Path, limits: OwnerLimits | None = None
) -> tuple[list[Component], list[InputError]]:
    """`components` with `distro_package` set for those dpkg or apk installed; the problems met.

    `base` is the folder the components' location paths are relative to (the scanned root)."""
    limits = limits or OwnerLimits()
    out = list(components)
    errors: list[InputError] = []
    for tree in _trees(out, base):
        if tree.manager == "apk":
            owners = _apk_owners(tree, limits, errors)
        else:
            owners = _dpkg_owners(tree, limits, errors)
        for path, owner in owners.items():
            for index in tree.sought[path]:
                out[index] = replace(out[index], distro_package=owner)
    return out, errors


def _trees(components: Sequence[Component], base: Path) -> list[_Tree]:
    """The package-managed trees holding distributions among `components`, with the paths sought."""
    real_base = os.path.realpath(base)
    tree_of: dict[str, tuple[str, str] | None] = {}
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
        if os.path.basename(site_dir) not in _SITE_OF.values():
            continue
        if site_dir not in tree_of:
            tree_of[site_dir] = _managed_tree(site_dir)
        found = tree_of[site_dir]
        if found is None or os.path.basename(site_dir) != _SITE_OF[found[0]]:
            continue
        manager, root = found
        installed_path = "/" + os.path.relpath(os.path.normpath(os.path.join(real_base, where)), root)
        if not installed_path.startswith("/usr/lib/"):
            continue  # the package managers' own Python folders; never /usr/local (pip's) or a venv
        tree = trees.setdefault(root, _Tree(root, manager, {}))
        tree.sought.setdefault(os.fsencode(installed_path), []).append(index)
    return list(trees.values())


def _managed_tree(folder: str) -> tuple[str, str] | None:
    """(package manager, tree) of the nearest folder at or above `folder` holding a dpkg status or an
    apk database (a regular file: in an unpacked image, a symlink would lead to the host's own)."""
    current = folder
    while True:
        for manager, database in (("dpkg", _STATUS), ("apk", _APK_DB)):
            path = os.path.join(current, *database)
            if os.path.isfile(path) and not os.path.islink(path):
                return manager, current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _dpkg_owners(tree: _Tree, limits: OwnerLimits, errors: list[InputError]) -> dict[bytes, str]:
    """Installed path → `Ecosystem/package@version` of the installed dpkg package that lists it."""
    packages = _dpkg_lists(tree, limits, errors)
    if not packages:
        return {}
    versions = _versions(Path(tree.root, *_STATUS), set(packages.values()), limits, errors)
    ecosystem = distro_ecosystem(read_os_release(Path(tree.root)))
    # Listed but not installed (config-files left after a removal, or a status not read: said).
    return {
        path: f"{ecosystem}/{package}@{versions[package]}"
        for path, package in packages.items()
        if package in versions
    }


def _apk_owners(tree: _Tree, limits: OwnerLimits, errors: list[InputError]) -> dict[bytes, str]:
    """Installed path → `Alpine/package@version`, from the apk database's `F:` (folder) and `R:`
    (file in that folder) lines, read once, keeping only the paths sought."""
    database = os.path.join(tree.root, *_APK_DB)
    owners: dict[bytes, str] = {}
    name = version = b""
    folder = b""
    try:
        opened = _open_regular(database)
        if opened is None:
            return owners
        with opened as handle:
            if os.fstat(handle.fileno()).st_size > limits.max_status_bytes:
                errors.append(
                    InputError(f"larger than {limits.max_status_bytes} bytes: owners not read", database)
                )
                return owners
            for raw in handle:
                line = raw.rstrip(b"\n")
                if not line:
                    name = version = folder = b""
                elif line.startswith(b"P:"):
                    name = line[2:]
                elif line.startswith(b"V:"):
                    version = line[2:]
                elif line.startswith(b"F:"):
                    folder = b"/" + line[2:]
                elif line.startswith(b"R:") and name and version:
                    path = folder + b"/" + line[2:]
                    if path in tree.sought:
                        owners[path] = (
                            f"Alpine/{name.decode(errors='replace')}@{version.decode(errors='replace')}"
                        )
    except OSError as exc:
        errors.append(InputError(f"cannot read the apk database: {exc.strerror or exc}", database))
    return owners


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


def _dpkg_lists(tree: _Tree, limits: OwnerLimits, errors: list[InputError]) -> dict[bytes, str]:
    """Installed path → the package whose file list holds it, for the paths sought; stops once every
    one is found."""
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
