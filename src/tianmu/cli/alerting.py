"""`tianmu alerts test|run`: the alert channels tried, and the rules delivered over the stored situation.

Part of the situation area (`tianmu.cli.situation` registers it). Every alert carries the audit chain's
tip, read from the data directory's signed tip file before each delivery; a run that delivered is an
audit entry (it records what was delivered, so the next run sends only what changed).
"""

from __future__ import annotations

import json as jsonlib
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from tianmu.cli.console import ExitCode, out_console
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.identity.audittip import exported_tip
from tianmu.situation import load_assets, load_incidents, open_findings
from tianmu.situation.alerts import (
    AlertConfig,
    AlertTransports,
    deliver,
    load_config,
    make_test_alert,
    run_alerts,
)

__all__ = ["register_alerts"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Alert rules (default: $TIANMU_HOME/alerts.toml).")
]


def _dump(data: Any) -> None:
    out_console.file.write(jsonlib.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _alert_config(session: CliSession, path: Path | None) -> AlertConfig:
    config_path = path or session.settings.home / "alerts.toml"
    if not config_path.exists():
        raise InputError("no alert configuration (see docs/situation.md for the format)", str(config_path))
    # Every alert carries the audit chain's tip, read from the data directory before each delivery.
    world = AlertTransports(audit_tip=partial(exported_tip, session.settings.home))
    return load_config(config_path, transports=world)


def register_alerts(app: typer.Typer) -> None:
    """Add `tianmu alerts` to `app`."""
    group = typer.Typer(
        help="Early warning: alert rules delivered by webhook, syslog and email.", no_args_is_help=True
    )
    app.add_typer(group, name="alerts")

    @group.command("test")
    @cli_errors
    def test_command(
        ctx: typer.Context,
        config: ConfigOpt = None,
        channel: Annotated[list[str] | None, typer.Option(help="Only these channels.")] = None,
    ) -> None:
        """Send a test alert to every channel (or the named ones) and say what happened."""
        session = CliSession.of(ctx)
        loaded = _alert_config(session, config)
        names = channel or list(loaded.channels)
        unknown = [n for n in names if n not in loaded.channels]
        if unknown:
            raise InputError(f"unknown channel(s): {', '.join(unknown)}")
        alert = make_test_alert(session.tenant, loaded.clock.now())
        failed = 0
        for name in names:
            result = deliver(
                loaded.channels[name], alert, loaded.retry, clock=loaded.clock, audit_tip=loaded.audit_tip
            )
            if result.ok:
                out_console.print(f"[green]ok[/] {name} ({result.attempts} attempt(s))")
            else:
                failed += 1
                out_console.print(f"[red]failed[/] {name}: {result.error}", highlight=False)
        raise typer.Exit(ExitCode.FINDINGS if failed else ExitCode.OK)

    @group.command("run")
    @cli_errors
    def run_command(ctx: typer.Context, config: ConfigOpt = None, json: JsonOpt = False) -> None:
        """Evaluate the rules over the stored incidents and findings; deliver what changed since last time."""
        session = CliSession.of(ctx)
        loaded = _alert_config(session, config)
        tenant = session.tenant
        with session.store() as store:
            results = run_alerts(
                store,
                tenant,
                loaded,
                incidents=load_incidents(store, tenant),
                findings=open_findings(store, tenant),
                assets=load_assets(store, tenant),
            )
            if results:
                session.record(
                    "alerts.run",
                    tenant,
                    store=store,
                    outcome="failure" if any(not r.ok for r in results) else "success",
                    delivered=sum(r.ok for r in results),
                    failed=sum(not r.ok for r in results),
                )
        rows = [
            {
                "channel": r.channel,
                "rule": r.alert.rule,
                "subject": r.alert.subject,
                "state": r.alert.state,
                "ok": r.ok,
                "attempts": r.attempts,
                "error": r.error,
            }
            for r in results
        ]
        if json:
            _dump(rows)
        else:
            for row in rows:
                mark = "[green]sent[/]" if row["ok"] else f"[red]failed[/] ({row['error']})"
                out_console.print(
                    f"{mark} {row['rule']} → {row['channel']}: {row['subject']} [{row['state']}]",
                    highlight=False,
                )
            out_console.print(
                f"{sum(r.ok for r in results)} alert(s) delivered, {sum(not r.ok for r in results)} failed"
            )
        raise typer.Exit(ExitCode.FINDINGS if any(not r.ok for r in results) else ExitCode.OK)
