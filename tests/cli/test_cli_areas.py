"""The console script loads only the area of the command it runs: the table it uses must be true."""

from __future__ import annotations

import importlib
import subprocess
import sys

import typer
import typer.main

from tianmu.cli.main import AREAS, area_of


def test_the_area_table_names_exactly_what_each_module_registers() -> None:
    for area, (names, functions) in AREAS.items():
        module = importlib.import_module(f"tianmu.cli.{area}")
        probe = typer.Typer()

        @probe.callback()
        def _root() -> None:
            """Needed so that a single command still makes a group."""

        for function in functions:
            getattr(module, function)(probe)
        registered = set(typer.main.get_command(probe).commands)  # type: ignore[attr-defined]
        assert registered == set(names), area


def test_area_of_a_command_line() -> None:
    assert area_of(["malware", "scan", "/srv"]) == "malware"
    assert area_of(["--help"]) is None
    assert area_of(["kb", "status", "--json"]) == "kb"
    assert area_of(["nonsense"]) is None


def test_the_console_script_runs_one_area_without_importing_the_others() -> None:
    code = (
        "import sys; sys.argv = ['tianmu', 'kb', '--help']\n"
        "from tianmu.cli.main import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('tianmu.cli.', 'fastapi', 'sigma'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "tianmu.cli.kb" in loaded
    assert "tianmu.cli.malware" not in loaded and "fastapi" not in loaded and "'sigma" not in loaded
