"""The house rules of docs/architecture.md, read from the source: who may import whom, and no cycles.

Every import of every module under `src/tianmu` counts — at module level, inside functions, and under
`TYPE_CHECKING` — because an import hidden in a function is still an arrow between rooms. A failure
names the file and line of the import that breaks a rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tianmu"

GROUND = frozenset({"core", "gmcrypto", "__init__"})
STORE = frozenset({"store"})
PLUMBING = frozenset({"readers", "network"})
CAPABILITIES = frozenset({"assets", "vulns", "malware", "detect", "intel", "websec", "identity"})
SITUATION = frozenset({"situation"})
ROAD = frozenset({"road"})
OUTPUTS = frozenset({"reports", "jobs", "service", "cli"})

ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"__init__"}),
    "gmcrypto": frozenset({"core", "__init__"}),
    "__init__": frozenset(),
    "store": GROUND,
    **{room: GROUND | STORE for room in PLUMBING},
    **{room: GROUND | STORE | PLUMBING for room in CAPABILITIES},
    "situation": GROUND | STORE | PLUMBING,
    "road": GROUND | STORE | PLUMBING | CAPABILITIES | SITUATION,
    **{room: GROUND | STORE | PLUMBING | CAPABILITIES | SITUATION | ROAD | OUTPUTS for room in OUTPUTS},
}
"""Room → the rooms it may import (besides itself). Capabilities never import each other."""

HEAVY_OPTIONAL_MARK = "optional"
"""An import inside a function is allowed only for a heavy optional library, with a comment (on the
line or the line above) that says which and contains the word "optional"."""


@dataclass(frozen=True, slots=True)
class Import:
    file: Path
    line: int
    importer: str
    imported: str
    in_function: bool
    comment: str

    def where(self) -> str:
        return f"{self.file.relative_to(SRC.parent)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> Iterator[Import]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source, str(path))
    module = module_name(path)
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside.update(id(sub) for sub in ast.walk(node) if isinstance(sub, ast.Import | ast.ImportFrom))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, path.name == "__init__.py")
            # `from tianmu.x import y` may name a module y: count the arrow to it, not only to the package.
            targets = [f"{base}.{alias.name}" for alias in node.names] if base else []
        else:
            continue
        around = " ".join(lines[max(0, node.lineno - 2) : node.end_lineno or node.lineno])
        comment = around.split("#", 1)[1] if "#" in around else ""
        for target in targets:
            yield Import(path, node.lineno, module, target, id(node) in inside, comment)


def all_imports() -> list[Import]:
    return [found for path in sorted(PACKAGE.rglob("*.py")) for found in imports_of(path)]


def known_modules() -> set[str]:
    return {module_name(path) for path in PACKAGE.rglob("*.py")}


def _tianmu_target(name: str, modules: set[str]) -> str | None:
    """The Tianmu module an import names (`tianmu.a.b.func` → `tianmu.a.b`), or None for others."""
    if name != "tianmu" and not name.startswith("tianmu."):
        return None
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def rule_violations(imports: list[Import], modules: set[str]) -> list[str]:
    problems: list[str] = []
    for found in imports:
        target = _tianmu_target(found.imported, modules)
        if target is None:
            continue
        source_room, target_room = room_of(found.importer), room_of(target)
        if source_room == target_room:
            continue
        if source_room not in ALLOWED:
            problems.append(f"{found.where()}: module in unknown room {source_room!r} (add it to the floors)")
        elif target_room not in ALLOWED[source_room]:
            problems.append(f"{found.where()}: {source_room} may not import {target_room} ({target})")
    return list(dict.fromkeys(problems))


def cycles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for found in imports:
        target = _tianmu_target(found.imported, modules)
        # A package's __init__ re-exporting its own modules is not a cycle of rooms: skip self-parents.
        if target is not None and target != found.importer and not found.importer.startswith(target + "."):
            graph[found.importer].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found_cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found_cycles.append(sorted(component))
    return found_cycles


def hidden_imports(imports: list[Import], modules: set[str]) -> list[str]:
    """Imports inside functions without a comment saying which heavy optional library they load.

    A Tianmu module counts when it is the home of such a library (the FastAPI app, the Celery app):
    the comment says so. Anything else hidden in a function is an arrow someone did not want to see.
    """
    problems: list[str] = []
    for found in imports:
        if not found.in_function or HEAVY_OPTIONAL_MARK in found.comment.lower():
            continue
        what = "Tianmu module" if _tianmu_target(found.imported, modules) is not None else "library"
        problems.append(
            f"{found.where()}: {what} {found.imported} imported inside a function without a comment "
            "saying which heavy optional library it loads"
        )
    return list(dict.fromkeys(problems))


def test_every_room_is_on_a_floor() -> None:
    rooms = {room_of(module) for module in known_modules()}
    assert rooms <= set(ALLOWED), f"rooms on no floor: {sorted(rooms - set(ALLOWED))}"


def test_who_may_import_whom() -> None:
    problems = rule_violations(all_imports(), known_modules())
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles(all_imports(), known_modules())
    assert not found, "\n".join(" ↔ ".join(component) for component in found)


def test_no_import_hidden_in_a_function() -> None:
    problems = hidden_imports(all_imports(), known_modules())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tianmu.assets.network import targets\n", "websec may not import assets"),
        ("def f():\n    from tianmu.assets import inventory\n", "websec may not import assets"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tianmu.road\n",
            "may not import road",
        ),
    ],
)
def test_the_rules_catch_a_reintroduced_arrow(tmp_path: Path, source: str, expected: str) -> None:
    """The checker itself: a `websec → assets` import, plain or hidden, fails and names file and line."""
    fake = SRC / "tianmu" / "websec" / "_probe_for_test.py"
    path = tmp_path / "probe.py"
    path.write_text(source)
    found = [
        Import(fake, item.line, "tianmu.websec._probe_for_test", item.imported, item.in_function, "")
        for item in imports_of_text(path)
    ]
    problems = rule_violations(found, known_modules())
    assert any(expected in problem and "_probe_for_test.py:" in problem for problem in problems), problems


def imports_of_text(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text())
    inside = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for sub in ast.walk(node)
        if isinstance(sub, ast.Import | ast.ImportFrom)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, "probe", alias.name, id(node) in inside, "")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                yield Import(
                    path, node.lineno, "probe", f"{node.module}.{alias.name}", id(node) in inside, ""
                )


def test_a_cycle_is_found() -> None:
    modules = {"tianmu.core.a", "tianmu.core.b", "tianmu.core.c"}
    edges = [
        ("tianmu.core.a", "tianmu.core.b"),
        ("tianmu.core.b", "tianmu.core.a"),
        ("tianmu.core.b", "tianmu.core.c"),
    ]
    imports = [Import(PACKAGE / "x.py", 1, a, b, False, "") for a, b in edges]
    assert cycles(imports, modules) == [["tianmu.core.a", "tianmu.core.b"]]
