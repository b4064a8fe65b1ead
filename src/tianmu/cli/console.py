"""Terminal plumbing shared by the commands: consoles, progress, exit codes, error reporting."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["ExitCode", "err_console", "out_console", "progress_reporter"]


# Results go to stdout so they can be piped; everything for the person at the terminal goes to stderr.
def _width() -> int | None:
    # Piped or captured output (CI logs, `make demo`) would otherwise be cut to 80 columns and fold
    # every advisory id; a terminal, or an explicit COLUMNS, still decides for itself.
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return None
    return 160


out_console = Console(highlight=False, soft_wrap=True, width=_width())
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1
    """Findings at or above --fail-on."""
    USAGE = 2
    """Bad usage or input that could not be read at all."""


_REFRESH_EVERY = 0.1


@contextmanager
def progress_reporter(description: str, total: int | None = None) -> Iterator[Callable[[str], None]]:
    """A callback that advances a Rich progress bar on a terminal, and does nothing elsewhere."""
    if not err_console.is_terminal:
        yield lambda _item: None
        return
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn()] if total else [TextColumn("{task.completed} files")]
    columns += [TimeElapsedColumn(), TextColumn("[dim]{task.fields[item]}")]
    # Refreshed from `advance`, not by Rich's refresh thread: with no other thread running, the scanners
    # may fork their worker processes (which then share the loaded rules) instead of spawning them.
    with Progress(*columns, console=err_console, transient=True, auto_refresh=False) as progress:
        task = progress.add_task(description, total=total, item="")
        shown = 0.0

        def advance(item: str) -> None:
            nonlocal shown
            progress.update(task, advance=1, item=item[-60:])
            now = time.monotonic()
            if now - shown >= _REFRESH_EVERY:
                progress.refresh()
                shown = now

        yield advance
