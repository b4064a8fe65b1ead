"""What an inventory extractor is, and what an inventory scan returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.core.errors import InputError
from tianmu.core.models import Component, Unresolved

__all__ = ["Extractor", "InventoryResult"]


@dataclass(slots=True)
class InventoryResult:
    root: str
    components: list[Component] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    files_read: int = 0
    """Inventory files successfully parsed (lockfiles, manifests, package databases, binaries)."""


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
    def extract(self, path: Path, display_path: str) -> Iterator[Component | Unresolved]:
        """Yield what the file holds. Raise ParseError(message, display_path, line) on malformed input."""
