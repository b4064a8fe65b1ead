"""The one way Tianmu walks a folder tree: `walk_tree`, under one set of `WalkRules`.

A generator over `os.scandir` (one directory listing in memory at a time), depth first, each folder
sorted by name with its files before its subfolders, never following symlinked folders (a link loop
cannot trap it). The road's collector (`assess`, `inventory`, `vulns`), `tianmu malware scan` and the
log search of `tianmu detect` all walk with it, so a live system root is treated the same everywhere:

- Pseudo and special file systems (proc, sysfs, devtmpfs, devpts, cgroup, securityfs, debugfs,
  tracefs, ...) are never entered: a read of `/proc/kmsg` blocks for ever, `/sys` and `/dev` hold
  kernel interfaces, not files of the system. They are known by the file-system type of their mount
  in `/proc/self/mountinfo`, not by name; without a mount table (no `/proc`) the names `/proc`,
  `/sys` and `/dev` of a system root are still left out.
- The walk stays on the file system of its root unless `cross_filesystems`: a mount point (any entry
  of the mount table, or a change of `st_dev`) is not entered, so `/` does not wander into a tmpfs
  `/run`, network shares or bind mounts of the same tree.
- `exclude` globs (`--exclude`, asked on the command line) leave entries out.
- A `.tianmuignore` at the root (gitignore syntax, through `pathspec`) is part of the scanned tree: who
  can write into it (an upload, a web root) could drop one holding `*` and hide a web shell. So, as git
  trusts a repository only when it is owned by the user running it (`safe.directory`):
  - it is read only when the rules ask (`WalkRules.ignore_file`: the CLI's `assess`, `inventory`,
    `vulns` and `detect` do; jobs of the service, whose targets are uploads, and `tianmu malware scan`
    never do);
  - and then only when it is trusted: a regular file (not a symlink, opened without following one)
    with one link, owned by the user running the scan or by root, writable by its owner alone;
  - an ignore file never hides a file from malware scanning: the collector of `assess` walks what it
    ignored too (`walk_marked`) and gives those files to the engines of every file (malware, filename
    indicators) only. Only `--exclude` leaves a file out of malware scanning;
  - the ignore file used (with its owner and mode) and how many entries it excluded, or why one was
    refused or not read, are always in the notes.

What was left out is counted in `WalkSkips`, whose `notes()` every job reports. Devices, FIFOs and
sockets are yielded like files (the walk never stats files); callers skip them before opening anything
and count them in `WalkSkips.special`. `refuse_named` says why a path the user named cannot be read.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from tianmu.core.errors import InputError

__all__ = [
    "IGNORE_FILE",
    "PSEUDO_FILESYSTEMS",
    "MountTable",
    "WalkRules",
    "WalkSkips",
    "refuse_named",
    "walk_marked",
    "walk_tree",
]

IGNORE_FILE = ".tianmuignore"
_IGNORE_FILE_LIMIT = 1 << 20
"""An ignore file larger than this is not read (it would be a list of globs, not a megabyte)."""
_NOTE_EXAMPLES = 5

PSEUDO_FILESYSTEMS = frozenset(
    {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs"}
    | {"pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "efivarfs"}
    | {"selinuxfs", "nsfs", "rpc_pipefs", "autofs", "nfsd", "usbfs", "sockfs", "pipefs", "ramfs"}
)
"""Kernel interfaces mounted as file systems: never entered, even with `cross_filesystems` (autofs
would trigger mounts of network shares; the rest are not files of the system)."""

_SYSTEM_PSEUDO = frozenset({"proc", "sys", "dev"})
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class MountTable:
    """Mount points (absolute paths) and their file-system types, as the kernel lists them."""

    mounts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> MountTable:
        """The lines of a `/proc/self/mountinfo`; a mount listed later covers an earlier one."""
        mounts: dict[str, str] = {}
        for line in text.splitlines():
            left, sep, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if not sep or len(fields) < 5 or not tail:
                continue
            point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            mounts[point] = tail[0]
        return cls(mounts)

    @classmethod
    def read(cls) -> MountTable:
        """This process's mount table; empty where there is no `/proc` (the name rule then applies)."""
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
                return cls.parse(handle.read(1 << 24))
        except OSError:
            return cls()

    def at(self, path: str) -> str | None:
        """The file-system type mounted exactly at `path`, if `path` is a mount point."""
        return self.mounts.get(path)

    def containing(self, path: str) -> tuple[str, str] | None:
        """(mount point, type) of the mount that holds `path`: the longest mount point above it."""
        probe = path
        while True:
            fstype = self.mounts.get(probe)
            if fstype is not None:
                return probe, fstype
            if probe == os.sep or not probe:
                return None
            probe = os.path.dirname(probe)


@dataclass(frozen=True, slots=True)
class WalkRules:
    """What a walk leaves out besides pseudo file systems: the same for every job."""

    exclude: tuple[str, ...] = ()
    """Globs (gitignore syntax) relative to the root: `--exclude`."""
    cross_filesystems: bool = False
    """Enter other file systems mounted below the root (pseudo ones are never entered)."""
    ignore_file: bool = False
    """Read a trusted `.tianmuignore` at the root (module docstring). Off unless asked: a job of the
    service (an upload) and a malware scan never let a file of the scanned tree hide others."""
    mounts: MountTable | None = None
    """The mount table (None: this system's, read once per walk); tests give their own."""

    def __post_init__(self) -> None:
        for number, pattern in enumerate(self.exclude, 1):
            try:
                pathspec.GitIgnoreSpec.from_lines([pattern])
            except ValueError as exc:
                raise InputError(f"--exclude {pattern!r} (#{number}): not a glob: {exc}") from exc


@dataclass(slots=True)
class WalkSkips:
    """What one walk (or several, of the paths of one job) left out, for the job's notes."""

    pseudo: list[str] = field(default_factory=list)
    """Folders on pseudo file systems not entered, as `path (type)`."""
    other_fs: list[str] = field(default_factory=list)
    """Mount points of other file systems not entered."""
    excluded: int = 0
    """Entries left out by `--exclude`."""
    ignored: int = 0
    """Entries left out by `.tianmuignore`."""
    ignored_scanned: int = 0
    """Files under what `.tianmuignore` left out that were still given to malware scanning (counted by
    the caller of `walk_marked`)."""
    ignore_files: list[str] = field(default_factory=list)
    """Each `.tianmuignore` met: used (owner, mode), refused (why) or not read (why)."""
    special: int = 0
    """Devices, FIFOs and sockets passed over (counted by the caller, which stats the files)."""
    vanished: int = 0
    """Files gone between their listing and the caller's look (a live system changes as it is walked)."""
    errors: list[str] = field(default_factory=list)
    """Lines of a `.tianmuignore` that could not be used, as `path:line: reason`."""

    def notes(self) -> list[str]:
        notes = []
        if self.pseudo:
            notes.append(
                f"{len(self.pseudo)} folder(s) on pseudo file systems not entered: {_few(self.pseudo)}"
            )
        if self.other_fs:
            notes.append(
                f"{len(self.other_fs)} other file system(s) not entered (--cross-filesystems to enter "
                f"them): {_few(self.other_fs)}"
            )
        if self.excluded:
            notes.append(f"{self.excluded} entries excluded by --exclude")
        notes.extend(self.ignore_files)
        if self.ignored:
            notes.append(f"{self.ignored} entries excluded by {IGNORE_FILE}")
        if self.ignored_scanned:
            notes.append(
                f"{self.ignored_scanned} file(s) that {IGNORE_FILE} excluded were still scanned for malware "
                "(an ignore file never hides a file from malware scanning; --exclude does)"
            )
        if self.special:
            notes.append(f"{self.special} device(s), FIFO(s) or socket(s) skipped")
        if self.vanished:
            notes.append(f"{self.vanished} file(s) vanished while the walk listed them")
        return notes


def _few(items: Sequence[str]) -> str:
    more = f", … {len(items) - _NOTE_EXAMPLES} more" if len(items) > _NOTE_EXAMPLES else ""
    return ", ".join(items[:_NOTE_EXAMPLES]) + more


def refuse_named(path: Path, mounts: MountTable | None = None) -> str | None:
    """Why a path the user named is not read (None: it may be): not a regular file or folder (a FIFO
    would block the reader, a device never ends), or on a pseudo file system (`/proc/kmsg` is a
    "regular" file whose read blocks for ever). Nothing is opened."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    kind = _special_kind(info.st_mode)
    if kind is not None:
        return f"a {kind}, not a regular file: not read"
    held = (mounts if mounts is not None else MountTable.read()).containing(os.path.realpath(path))
    if held is not None and held[1] in PSEUDO_FILESYSTEMS:
        return f"on a pseudo file system ({held[1]} at {held[0]}): not read"
    return None


def _special_kind(mode: int) -> str | None:
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


@dataclass(slots=True)
class _Ignores:
    exclude: pathspec.GitIgnoreSpec | None
    ignore: pathspec.GitIgnoreSpec | None

    def verdict(self, relpath: str) -> str | None:
        """ "exclude" (by `--exclude`), "ignore" (by the ignore file) or None; `relpath` ends in / for a
        folder."""
        if self.exclude is not None and self.exclude.match_file(relpath):
            return "exclude"
        if self.ignore is not None and self.ignore.match_file(relpath):
            return "ignore"
        return None


def _ignores(root: Path, rules: WalkRules, skips: WalkSkips) -> _Ignores:
    exclude = pathspec.GitIgnoreSpec.from_lines(rules.exclude) if rules.exclude else None
    where = os.path.join(root, IGNORE_FILE)
    if not rules.ignore_file:
        if os.path.lexists(where):
            skips.ignore_files.append(
                f"{where}: not read: this job does not let a file of the scanned tree leave others out "
                "(use --exclude)"
            )
        return _Ignores(exclude, None)
    data = _trusted_ignore_file(where, skips)
    if data is None:
        return _Ignores(exclude, None)
    lines = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except ValueError as exc:
            skips.errors.append(f"{where}:{number}: not a glob, line not used: {exc}")
            continue
        lines.append(line)
    ignore = pathspec.GitIgnoreSpec.from_lines(lines) if any(s.strip() for s in lines) else None
    return _Ignores(exclude, ignore)


def _trusted_ignore_file(where: str, skips: WalkSkips) -> bytes | None:
    """The content of the ignore file at `where` when it may be used, else None (and why, noted).

    The checks are made on the opened file (`fstat`), so the file judged is the file read."""
    # O_NOFOLLOW: a symlink is refused, not followed; O_NONBLOCK: a FIFO planted there cannot block.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(where, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = "a symlink" if exc.errno == errno.ELOOP else f"cannot read: {exc.strerror or exc}"
        skips.ignore_files.append(f"{where}: not used: {reason}")
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        refused = _untrusted(info)
        if refused is not None:
            skips.ignore_files.append(f"{where}: not used: {refused}")
            return None
        try:
            data = handle.read(_IGNORE_FILE_LIMIT + 1)
        except OSError as exc:
            skips.errors.append(f"{where}: cannot read: {exc.strerror or exc}")
            return None
    if len(data) > _IGNORE_FILE_LIMIT:
        skips.errors.append(f"{where}: larger than {_IGNORE_FILE_LIMIT} bytes: not used")
        return None
    skips.ignore_files.append(
        f"{where}: used (owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o})"
    )
    return data


def _untrusted(info: os.stat_result) -> str | None:
    """Why an ignore file with this status may have been planted (None: it may be trusted)."""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    user = os.geteuid()
    if info.st_uid not in (user, 0):
        return f"owned by uid {info.st_uid}, neither the user running the scan (uid {user}) nor root"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    if info.st_nlink > 1:
        # A hard link to some trusted file whose lines happen to be globs (`*`) is no ignore file.
        return f"it has {info.st_nlink} hard links"
    return None


def walk_tree(
    root: Path,
    *,
    on_error: Callable[[str, OSError], None],
    skip_dir: Callable[[str, str], bool] | None = None,
    rules: WalkRules | None = None,
    skips: WalkSkips | None = None,
) -> Iterator[tuple[os.DirEntry[str], str]]:
    """(entry, path relative to `root`) of everything under `root` that is not a folder.

    `skip_dir(parent relpath, name)` leaves a folder out; `on_error(relpath, error)` hears of a folder
    that cannot be listed ("." for the root), and the walk goes on. An entry whose type cannot be read
    is yielded as it is: the caller's own look at it (a stat) says what is wrong. What the rules left
    out is counted in `skips`.
    """
    for item, relpath, _ignored in _walk(root, on_error, skip_dir, rules, skips, keep_ignored=False):
        yield item, relpath


def walk_marked(
    root: Path,
    *,
    on_error: Callable[[str, OSError], None],
    skip_dir: Callable[[str, str], bool] | None = None,
    rules: WalkRules | None = None,
    skips: WalkSkips | None = None,
) -> Iterator[tuple[os.DirEntry[str], str, bool]]:
    """As `walk_tree`, with what the ignore file left out yielded too, marked True: for the engines an
    ignore file may not hide a file from (malware scanning). `--exclude` still leaves entries out;
    `skips.ignored` counts what the ignore file matched, as `walk_tree` does (a folder once)."""
    yield from _walk(root, on_error, skip_dir, rules, skips, keep_ignored=True)


def _walk(
    root: Path,
    on_error: Callable[[str, OSError], None],
    skip_dir: Callable[[str, str], bool] | None,
    rules: WalkRules | None,
    skips: WalkSkips | None,
    *,
    keep_ignored: bool,
) -> Iterator[tuple[os.DirEntry[str], str, bool]]:
    rules = rules or WalkRules()
    skips = skips if skips is not None else WalkSkips()
    mounts = rules.mounts if rules.mounts is not None else MountTable.read()
    real_root = os.path.realpath(root)
    held = mounts.containing(real_root)
    if held is not None and held[1] in PSEUDO_FILESYSTEMS:
        skips.pseudo.append(f"{root} ({held[1]})")
        return
    try:
        root_dev = os.stat(root).st_dev
    except OSError as exc:
        on_error(".", exc)
        return
    ignores = _ignores(root, rules, skips)
    by_name = not mounts.mounts and real_root == os.path.abspath(os.sep)
    # (folder, relpath, real path, device, under a folder the ignore file left out)
    stack: list[tuple[str, str, str, int, bool]] = [(str(root), "", real_root, root_dev, False)]
    while stack:
        directory, rel, real, dev, hidden = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            on_error(rel or ".", exc)
            continue
        subdirs: list[tuple[str, str, str, int, bool]] = []
        for item in entries:
            relpath = f"{rel}/{item.name}" if rel else item.name
            try:
                is_dir = item.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            verdict = ignores.verdict(relpath + "/" if is_dir else relpath)
            if verdict == "exclude":
                skips.excluded += 1
                continue
            if verdict == "ignore" and not hidden:
                skips.ignored += 1
            ignored = hidden or verdict == "ignore"
            if ignored and not keep_ignored:
                continue
            if not is_dir:
                yield item, relpath, ignored
                continue
            if skip_dir is not None and skip_dir(rel, item.name):
                continue
            real_path = os.path.join(real, item.name)
            entered = _enter(item, relpath, real_path, dev, mounts, rules, skips, by_name=by_name and not rel)
            if entered is not None:
                subdirs.append((item.path, relpath, real_path, entered, ignored))
        stack.extend(reversed(subdirs))


def _enter(
    item: os.DirEntry[str],
    relpath: str,
    real_path: str,
    parent_dev: int,
    mounts: MountTable,
    rules: WalkRules,
    skips: WalkSkips,
    *,
    by_name: bool,
) -> int | None:
    """The folder's device when the walk may enter it, None (and counted) when it is left out."""
    fstype = mounts.at(real_path)
    if fstype in PSEUDO_FILESYSTEMS or (by_name and item.name in _SYSTEM_PSEUDO):
        skips.pseudo.append(f"{relpath} ({fstype or 'system folder'})")
        return None
    try:
        dev = item.stat(follow_symlinks=False).st_dev
    except OSError:
        dev = parent_dev  # the listing of the folder will say what is wrong with it
    if (fstype is not None or dev != parent_dev) and not rules.cross_filesystems:
        skips.other_fs.append(f"{relpath} ({fstype or 'another device'})")
        return None
    return dev
