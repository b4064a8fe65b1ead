"""`tianmu kb`: the knowledge bases — import (offline first), update (online), status."""

from __future__ import annotations

import json as jsonlib
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tianmu.cli.console import ExitCode, err_console, out_console, progress_reporter
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.road.knowledge import default_sources, import_any, kb_status, update_sources
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportLimits, ImportReport, KbContext

__all__ = ["print_reports", "record_import", "register"]


def print_reports(reports: list[ImportReport], as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "source": r.source,
                "kind": r.kind,
                "origin": r.origin,
                "status": r.status,
                "added": r.added,
                "updated": r.updated,
                "removed": r.removed,
                "record_count": r.record_count,
                "digest": r.digest,
                "errors": r.errors,
            }
            for r in reports
        ]
        out_console.file.write(jsonlib.dumps(rows, indent=2) + "\n")
        return
    for r in reports:
        for error in r.errors:
            err_console.print(f"[yellow]warning:[/] {error}", markup=True, highlight=False)
    table = Table(header_style="bold")
    for column in ("Source", "Status", "Records", "Added", "Updated", "Removed", "Errors"):
        table.add_column(column)
    for r in reports:
        style = "red" if r.status in ("failed", "refused") else "green" if r.status != "unchanged" else "dim"
        table.add_row(
            r.source,
            f"[{style}]{r.status}[/]",
            str(r.record_count),
            str(r.added),
            str(r.updated),
            str(r.removed),
            str(len(r.errors)),
        )
    out_console.print(table)


def _limits() -> ImportLimits:
    """Import limits: the defaults, or `TIANMU_KB_<LIMIT>` from the environment (read here, at the edge)."""
    return ImportLimits.from_environment(os.environ)


def record_import(
    session: CliSession, store: Store, action: str, target: str, reports: list[ImportReport], replace: bool
) -> None:
    """One audit entry per import or update (`action`), with what it did to each source."""
    failed = bool(reports) and all(r.status in ("failed", "refused") for r in reports)
    session.record(
        action,
        target,
        store=store,
        outcome="failure" if failed else "success",
        replace=replace,
        sources=[
            {
                "source": r.source,
                "status": r.status,
                "added": r.added,
                "updated": r.updated,
                "removed": r.removed,
            }
            for r in reports
        ],
    )


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Knowledge bases: vulnerability advisories (OSV, KEV, EPSS) and every other capability's data.",
        no_args_is_help=True,
    )
    app.add_typer(group, name="kb")

    @group.command("import")
    @cli_errors
    def import_command(
        ctx: typer.Context,
        paths: Annotated[
            list[Path],
            typer.Argument(
                help="Knowledge-base files or folders (OSV all.zip or records, CISA KEV, EPSS...), "
                "or a bundle folder holding several (osv/, kev/...)."
            ),
        ],
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
        replace: Annotated[
            bool,
            typer.Option(
                "--replace",
                help="Make the import authoritative: records of its sources missing from it are removed "
                "(default: merge, nothing removed).",
            ),
        ] = False,
    ) -> None:
        """Import knowledge-base files (offline), merged into their sources (see --replace)."""
        session = CliSession.of(ctx)
        reports: list[ImportReport] = []
        with session.store() as store, progress_reporter("Importing") as advance:
            kb = KbContext(
                store=store, home=session.settings.home, progress=advance, replace=replace, limits=_limits()
            )
            for path in paths:
                reports.extend(import_any(kb, path))
            record_import(session, store, "kb.import", ", ".join(str(p) for p in paths), reports, replace)
        print_reports(reports, json)
        if reports and all(r.record_count == 0 and r.errors for r in reports):
            raise typer.Exit(ExitCode.USAGE)

    @group.command("update")
    @cli_errors
    def update_command(
        ctx: typer.Context,
        source: Annotated[
            list[str] | None,
            typer.Option(
                "--source", "-s", help=f"Sources to update (default: {', '.join(default_sources())})."
            ),
        ] = None,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
        replace: Annotated[
            bool,
            typer.Option(
                "--replace", help="Apply a download even when it would remove most of a source's records."
            ),
        ] = False,
    ) -> None:
        """Download the official sources (osv.dev, CISA KEV, FIRST EPSS...) and import them."""
        session = CliSession.of(ctx)
        with session.store() as store, progress_reporter("Updating") as advance:
            kb = KbContext(
                store=store, home=session.settings.home, progress=advance, replace=replace, limits=_limits()
            )
            reports = update_sources(kb, source)
            wanted = ", ".join(source) if source else "default sources"
            record_import(session, store, "kb.update", wanted, reports, replace)
        print_reports(reports, json)
        if any(r.status in ("failed", "refused") for r in reports):
            raise typer.Exit(ExitCode.USAGE)

    @group.command("status")
    @cli_errors
    def status_command(
        ctx: typer.Context,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    ) -> None:
        """Per source: kind, records, import date, digest."""
        with CliSession.of(ctx).store() as store:
            rows = kb_status(store)
        if json:
            out_console.file.write(jsonlib.dumps([r.as_dict() for r in rows], indent=2) + "\n")
            return
        if not rows:
            out_console.print(
                "No knowledge base imported yet: `tianmu kb import PATH` or `tianmu kb update`."
            )
            return
        table = Table(header_style="bold")
        for column in ("Source", "Kind", "Records", "Version", "Imported", "Digest", "From"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(
                r.name,
                r.kind,
                str(r.record_count),
                r.version or "",
                r.imported_at.strftime("%Y-%m-%d %H:%M UTC"),
                r.digest[:16],
                r.origin,
            )
        out_console.print(table)
