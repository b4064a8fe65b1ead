"""The floors of the network rooms hold: who may import whom (see DESIGN.md), read from the source.

Every import counts, at module level or not: an import inside a function is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tianmu"

# room -> rooms of Tianmu it must never import
FORBIDDEN = {
    "network": ("assets", "vulns", "websec", "reports", "road", "situation", "jobs", "cli", "service"),
    "assets/network": ("vulns", "websec", "reports", "road", "situation", "jobs", "cli", "service"),
    "websec": ("assets", "vulns", "reports", "road", "situation", "jobs", "cli", "service"),
    "vulns": ("assets", "websec", "reports", "road", "situation", "jobs", "cli", "service"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_room_imports_only_floors_below(room: str) -> None:
    banned = tuple(f"tianmu.{name}" for name in FORBIDDEN[room])
    wrong = [
        f"{path.relative_to(SRC)}:{line}: {module}"
        for path in sorted((SRC / room).rglob("*.py"))
        for line, module in _imports(path)
        if any(module == name or module.startswith(name + ".") for name in banned)
    ]
    assert wrong == []


def test_no_import_inside_a_function() -> None:
    rooms = [SRC / "network", SRC / "assets" / "network", SRC / "websec", SRC / "road" / "network.py"]
    files = [p for room in rooms for p in ([room] if room.is_file() else sorted(room.rglob("*.py")))]
    nested = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                nested += [
                    f"{path.relative_to(SRC)}:{inner.lineno}"
                    for inner in ast.walk(node)
                    if isinstance(inner, ast.Import | ast.ImportFrom)
                ]
    assert nested == []
