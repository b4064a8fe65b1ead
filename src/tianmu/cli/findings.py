"""`tianmu findings`: the stored findings of the tenant, and their triage."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated

import typer
from rich.table import Table

from tianmu.cli.console import err_console, out_console
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.core.models import FindingKind, Severity, TriageStatus
from tianmu.reports._common import severity_label
from tianmu.reports.json_report import finding_to_dict
from tianmu.store.repository import list_findings, set_status

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Stored findings and their triage status.", no_args_is_help=True)
    app.add_typer(group, name="findings")

    @group.command("list")
    @cli_errors
    def list_command(
        ctx: typer.Context,
        severity: Annotated[Severity | None, typer.Option(help="Only at or above this severity.")] = None,
        status: Annotated[list[TriageStatus] | None, typer.Option(help="Only these statuses.")] = None,
        kind: Annotated[list[FindingKind] | None, typer.Option(help="Only these kinds.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 200,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    ) -> None:
        """List the tenant's findings, newest first."""
        session = CliSession.of(ctx)
        with session.store() as store:
            rows = list_findings(
                store, session.tenant, kinds=kind, min_severity=severity, statuses=status, limit=limit
            )
        if json:
            out_console.file.write(jsonlib.dumps([finding_to_dict(r.finding) for r in rows], indent=2) + "\n")
            return
        table = Table(header_style="bold")
        for column in ("Fingerprint", "Severity", "Kind", "Id", "Component", "Status", "Last seen"):
            table.add_column(column, overflow="fold")
        for row in rows:
            f = row.finding
            comp = f"{f.component.name} {f.component.version}" if f.component else ""
            seen = f.last_seen.strftime("%Y-%m-%d %H:%M") if f.last_seen else ""
            table.add_row(
                f.fingerprint[:12], severity_label(f), f.kind.value, f.rule_id, comp, f.status.value, seen
            )
        out_console.print(table)

    @group.command("triage")
    @cli_errors
    def triage_command(
        ctx: typer.Context,
        fingerprint: Annotated[
            str, typer.Argument(help="Fingerprint, or a unique prefix of at least 8 characters.")
        ],
        status: Annotated[TriageStatus, typer.Argument(help="New status.")],
    ) -> None:
        """Set the triage status of one finding; it is kept when the finding is seen again."""
        session = CliSession.of(ctx)
        tenant = session.tenant
        with session.store() as store:
            full = fingerprint
            if len(fingerprint) < 64:
                if len(fingerprint) < 8:
                    raise InputError("a fingerprint prefix needs at least 8 characters")
                matches = {
                    r.finding.fingerprint
                    for r in list_findings(store, tenant)
                    if r.finding.fingerprint.startswith(fingerprint)
                }
                if len(matches) != 1:
                    raise InputError(
                        f"{len(matches)} findings match the prefix {fingerprint!r}; give more characters"
                    )
                full = matches.pop()
            if not set_status(store, tenant, full, status):
                raise InputError(f"no finding with fingerprint {fingerprint!r} in tenant {tenant!r}")
            session.record("finding.triage", full, store=store, status=status.value, changed=1)
        err_console.print(f"{full[:12]} is now {status.value}")
