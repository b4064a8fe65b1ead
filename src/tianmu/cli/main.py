"""Entry point of the `tianmu` command: the Typer app, shared options, and error handling.

The root callback starts one `CliSession` per invocation (the settings, read once from the environment);
every command takes it from its context, opens the store through it and calls one library function;
what goes wrong on purpose (TianmuError, a bad setting included) is printed as one clear line and exits 2.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar

import typer

from tianmu import __version__
from tianmu.cli.console import ExitCode, err_console, out_console
from tianmu.cli.session import CliSession
from tianmu.core.errors import TianmuError

# `app` (every command registered) is made on first access by the module `__getattr__` below.
__all__ = ["AREAS", "area_of", "cli_errors", "register_areas", "run"]

P = ParamSpec("P")
R = TypeVar("R")


class _TianmuApp(typer.Typer):
    """The `tianmu` Typer app, which knows the areas whose commands it already has."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.areas: set[str] = set()


_app = _TianmuApp(
    name="tianmu",
    help="Tianmu (天目): network security situation awareness.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn TianmuError into a one-line message and exit code 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except TianmuError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(ExitCode.USAGE) from exc

    return wrapper


@_app.callback()
def _root(ctx: typer.Context) -> None:
    """Tianmu (天目): network security situation awareness."""
    # Runs once per invocation (a callback also keeps `tianmu` a group when only `version` is loaded):
    # the session of this invocation, which every command takes from its context. A caller may have
    # passed one (`obj=`); CliRunner tests change the environment between invocations of the same app.
    ctx.ensure_object(CliSession)


@_app.command()
def version() -> None:
    """Print Tianmu's version."""
    out_console.print(f"tianmu {__version__}")


# Each area's module and the top-level commands it adds. The console script imports only the area of the
# command it runs (a `tianmu malware scan` never loads the Sigma engine or FastAPI); `--help`, an unknown
# command, and `tianmu.cli.main.app` (tests, embedding) get every area. tests/cli checks this table
# against what each module really registers.
AREAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "assess": (("assess", "inventory", "vulns"), ("register",)),
    "kb": (("kb",), ("register",)),
    "findings": (("findings",), ("register",)),
    "jobs": (("worker", "jobs"), ("register",)),
    "discover": (("discover", "services", "scans"), ("register", "register_listings")),
    "websec": (("web", "domain"), ("register",)),
    "malware": (("malware",), ("register",)),
    "intel": (("intel",), ("register",)),
    "situation": (("incidents", "trace", "evidence", "alerts", "risk"), ("register",)),
    "detect": (("detect", "rules"), ("register",)),
    "crypto": (("crypto",), ("register",)),
    "identity": (("tenant", "user", "audit", "login", "serve"), ("register",)),
}


def register_areas(areas: Iterable[str]) -> None:
    """Add the commands of these areas to the app (once each)."""
    for area in areas:
        if area in _app.areas:
            continue
        module = importlib.import_module(f"tianmu.cli.{area}")
        for function in AREAS[area][1]:
            getattr(module, function)(_app)
        _app.areas.add(area)


def area_of(argv: Sequence[str]) -> str | None:
    """The area whose command `argv` runs, or None (help, options only, an unknown command)."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    return next((area for area, (names, _f) in AREAS.items() if command in names), None)


def __getattr__(name: str) -> Any:
    if name == "app":
        register_areas(AREAS)
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run() -> None:
    """Console-script entry point."""
    area = area_of(sys.argv[1:])
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if command != "version":
        register_areas([area] if area else AREAS)
    try:
        _app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug of ours: say so plainly, keep the traceback for those who ask
        if os.environ.get("TIANMU_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {exc.__class__.__name__}: {exc}\n"
            "Run again with TIANMU_DEBUG=1 for the traceback, and please report it.",
            markup=True,
            highlight=False,
        )
        sys.exit(ExitCode.USAGE)
