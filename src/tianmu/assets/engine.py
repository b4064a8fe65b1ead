"""The inventory engine: the road's package files in, components and unresolved dependencies out.

It reads exactly the files the collector classed as `PACKAGE` (the one walk already happened), each
with the extractors whose name rules claim it, and produces the components the vulnerability engine
consumes. Its errors are the inventory's `path:line: message` problems.
"""

from __future__ import annotations

import os
from pathlib import Path

from tianmu.assets.interface import Extractor, InventoryResult, match_path
from tianmu.assets.inventory import InventoryReader
from tianmu.core.engine import (
    EngineResult,
    FileClass,
    InputKind,
    Inputs,
    JobContext,
    Requirements,
)
from tianmu.core.errors import InputError

__all__ = ["InventoryEngine"]


class InventoryEngine:
    name = "inventory"
    requirements = Requirements(
        files=frozenset({FileClass.PACKAGE}), produces=frozenset({InputKind.COMPONENTS})
    )

    def __init__(self, extractors: list[Extractor] | None = None) -> None:
        self._extractors = extractors
        self._reader = InventoryReader("", extractors)

    def claims(self, match_path: Path) -> bool | None:
        """The collector's question: is this file one of ours (None: only its content can tell)?"""
        return self._reader.claims(match_path)

    def read(self, inputs: Inputs, job: JobContext) -> tuple[InventoryResult, list[InputError]]:
        """The inventory of the collected package files, with its errors as InputErrors."""
        root = job.root
        reader = InventoryReader(str(root) if root is not None else "", self._extractors, job.progress)
        single = root is not None and not root.is_dir()
        for file in inputs.files_of(FileClass.PACKAGE):
            # A named file is judged by its full path (`.../var/lib/dpkg/status`), as the collector did.
            matched = (
                Path(os.path.abspath(file.path)) if single or root is None else match_path(root, file.relpath)
            )
            reader.read(Path(file.path), file.relpath, matched)
        base = None if root is None else root.parent if single else root
        result = reader.finish(base)
        return result, result.errors

    def analyse(self, inputs: Inputs, job: JobContext) -> EngineResult:
        inventory, errors = self.read(inputs, job)
        consumed = {c.location.path for c in inventory.components if c.location is not None}
        consumed |= {u.location.path for u in inventory.unresolved}
        return EngineResult(
            consumed=consumed,
            errors=[str(error) for error in errors],
            components=inventory.components,
            unresolved=inventory.unresolved,
            files_read=inventory.files_read,
            notes=[f"inventory: {inventory.vanished} file(s) vanished between the walk and their reading"]
            if inventory.vanished
            else [],
        )
