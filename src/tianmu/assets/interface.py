"""What an inventory extractor is, and what an inventory scan returns."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.core.errors import InputError
from tianmu.core.models import Component, Unresolved

__all__ = ["DEFAULT_MAX_BYTES", "Extracted", "Extractor", "InventoryResult", "match_path"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Text inventory files larger than this are refused (checked with stat, before reading)."""

Extracted = Component | Unresolved | InputError
"""What `Extractor.extract` yields. A yielded InputError is a problem that does not stop the file
(an include that cannot be read, an unsupported variant); a raised one stops it."""


def match_path(root: Path, relpath: str) -> Path:
    """The path the extractors match a walked file by: its path relative to the root, under the root's
    own name, so that a scan pointed at a `site-packages` or `requirements` folder itself sees the
    folder it is in (a file named on its own is matched by its absolute path instead)."""
    return Path(os.path.basename(os.path.abspath(root)), relpath)


@dataclass(slots=True)
class InventoryResult:
    root: str
    components: list[Component] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    files_read: int = 0
    """Inventory files successfully parsed (lockfiles, manifests, package databases, binaries)."""
    vanished: int = 0
    """Files gone between the walk and their reading (a live system changes while it is read): not
    errors of the input, counted in a note."""


class Extractor(ABC):
    """Reads one kind of inventory file.

    `name` is stable (used in `--json` output and to switch extractors off); `matches` must be cheap:
    it sees only the path, relative to the scan root, and decides from the file name.
    """

    name: str = ""
    ecosystem: str = ""

    @abstractmethod
    def matches(self, relpath: Path) -> bool: ...

    @abstractmethod
    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        """Yield what the file holds. Raise ParseError(message, display_path, line) on malformed input."""

    # Additions for the scanner (defaults keep the original contract: a name match is enough).
    max_bytes: int | None = DEFAULT_MAX_BYTES
    """Refuse files larger than this (None: no limit, for extractors that never read a whole file)."""
    sniff_bytes: int = 0
    """When > 0, the scanner reads this many leading bytes and extracts only if `accepts(head)`."""

    generic_names: bool = False
    """Its name rule matches files of any kind (suffixless, `.exe`, `.so`): a match alone does not make a
    file an inventory file, and an extractor with a specific name for the file takes precedence."""
    reads_beside: tuple[tuple[str, ...], ...] = ()
    """Path endings of files it reads besides its own (a package database's `etc/os-release`), so the
    collector counts them as inventory files too and no other reader opens them."""

    def accepts(self, head: bytes) -> bool:
        """Content check after a name match, for generic names (`bom.json`) and binaries."""
        return True
