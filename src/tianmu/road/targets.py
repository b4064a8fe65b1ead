"""What a path target is as an asset: a repository checkout (it has `.git`) or a directory, and its label.

An asset's `name` is its identity: the path resolved through symlinks, so re-assessing the same place
updates the same asset however it was typed (`../shared/data/logs`, a symlink to it), and two folders
both called `logs` stay two assets. Its `label` is what people call it, from what the user gave:

- a live system root (`/`): the host name;
- a repository checkout: its remote (`remote "origin"` in `.git/config`, else the first remote with a
  url), without the user name, password or token of an https URL, nor its query or fragment;
- anything else: the folder's or file's name as typed (a symlink's own name; `..` and `.` stand for the
  folder they name).

`.git/config` lies in the scanned tree and may be hostile: it is read bounded (64 KiB), a line at a
time, and whatever it holds only ever becomes a label of at most 200 printable characters; a config that
cannot be read or has no remote gives the folder's name.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tianmu.core.models import Asset, AssetKind

__all__ = ["asset_for_path", "label_for_path"]

_CONFIG_LIMIT = 64 << 10
"""Bytes of `.git/config` (or of a `.git` file, `commondir`) read: a config is a few hundred bytes."""
_LABEL_LIMIT = 200
_SECTION = re.compile(r'^\s*\[\s*remote\s+"((?:[^"\\]|\\.)*)"\s*\]')
_OTHER_SECTION = re.compile(r"^\s*\[")
_URL = re.compile(r"^\s*url\s*=\s*(.*?)\s*$", re.IGNORECASE)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def asset_for_path(path: Path, tenant: str) -> Asset:
    resolved = path.resolve()
    kind = AssetKind.REPOSITORY if (resolved / ".git").exists() else AssetKind.DIRECTORY
    return Asset(name=str(resolved), kind=kind, tenant=tenant, label=label_for_path(path, resolved, kind))


def label_for_path(path: Path, resolved: Path, kind: AssetKind) -> str:
    """What people call the target `path` (resolved: `resolved`); see the module docstring."""
    if resolved == Path(resolved.anchor):
        return _clean(socket.gethostname()) or str(resolved)
    if kind is AssetKind.REPOSITORY:
        remote = _remote(resolved / ".git")
        if remote:
            return remote
    # abspath normalises `..` without resolving symlinks: the name the user gave, not its target's.
    return _clean(os.path.basename(os.path.abspath(path))) or resolved.name


def _remote(git: Path) -> str | None:
    """The public url of the checkout's `origin` remote (else of its first remote), if any."""
    config = _config_of(git)
    if config is None:
        return None
    urls: dict[str, str] = {}
    section: str | None = None
    for line in _read(config).splitlines():
        if header := _SECTION.match(line):
            section = header.group(1)
            continue
        if _OTHER_SECTION.match(line):
            section = None
            continue
        if section is not None and section not in urls and (url := _URL.match(line)):
            urls[section] = url.group(1).strip('"')
    for name in ("origin", *urls):
        public = _public(urls.get(name, ""))
        if public:
            return public
    return None


def _config_of(git: Path) -> Path | None:
    """`.git/config`; for a worktree or submodule (`.git` is a file: `gitdir: ...`), its repository's."""
    if git.is_dir():
        return git / "config"
    text = _read(git)
    if not text.startswith("gitdir:"):
        return None
    gitdir = git.parent / text.splitlines()[0].removeprefix("gitdir:").strip()
    common = _read(gitdir / "commondir").strip()  # a worktree shares its main checkout's config
    return (gitdir / common if common else gitdir) / "config"


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(_CONFIG_LIMIT).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _public(url: str) -> str:
    """`url` without credentials (`https://user:token@host/x` → `https://host/x`), query or fragment.

    An scp-like address (`git@github.com:org/repo.git`) holds no password: it is kept as written."""
    # Cut to length only after the credentials are gone: a cut could leave half a password behind.
    url = _UNPRINTABLE.sub("", url).strip()
    if "://" not in url:
        return _clean(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""  # not a URL a label can be made of without guessing what is a secret
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{port}" if port is not None else ""
    return _clean(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def _clean(text: str) -> str:
    return _UNPRINTABLE.sub("", text).strip()[:_LABEL_LIMIT]
