"""Entry point of the `tianmu` command: the Typer app, shared options, and error handling.

Every command opens the store through `open_store(Settings.from_env())` and calls one library
function; what goes wrong on purpose (TianmuError) is printed as one clear line and exits 2.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from tianmu import __version__
from tianmu.cli.console import ExitCode, err_console, out_console
from tianmu.core.config import Settings
from tianmu.core.errors import TianmuError
from tianmu.store.database import Store, open_store

__all__ = ["app", "cli_errors", "open_default_store", "run"]

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
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


def open_default_store() -> Store:
    return open_store(Settings.from_env())


def settings() -> Settings:
    return Settings.from_env()


@app.command()
def version() -> None:
    """Print Tianmu's version."""
    out_console.print(f"tianmu {__version__}")


def _register_commands() -> None:
    # Imported here so that each area's module can import `app` helpers from this one.
    from tianmu.cli import assess, findings, kb

    assess.register(app)
    kb.register(app)
    findings.register(app)

    from tianmu.cli import jobs

    jobs.register(app)

    from tianmu.cli import discover, websec

    discover.register(app)
    discover.register_listings(app)
    websec.register(app)

    from tianmu.cli import malware

    malware.register(app)

    from tianmu.cli import intel

    intel.register(app)

    from tianmu.cli import situation

    situation.register(app)

    from tianmu.cli import detect

    detect.register(app)

    from tianmu.cli import crypto, identity

    crypto.register(app)
    identity.register(app)


_register_commands()


def run() -> None:
    """Console-script entry point."""
    try:
        app()
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
