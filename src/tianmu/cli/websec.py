"""`tianmu web` (website checks) and `tianmu domain` (domain-name security).

The commands only read options and print: the work is `tianmu.road.network.run_web` / `run_domain`."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer

from tianmu.cli.assess import FailOn
from tianmu.cli.console import err_console, out_console, progress_reporter
from tianmu.cli.discover import exit_code_for, print_findings
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.road.network import run_domain, run_web
from tianmu.websec.domain import DomainOptions
from tianmu.websec.engine import WebOptions

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
FailOnOpt = Annotated[
    FailOn, typer.Option("--fail-on", help="Exit 1 when a finding is at least this severe.")
]
SaveOpt = Annotated[bool, typer.Option("--save/--no-save", help="Record the findings in the store.")]


def _notes(errors: list[str], notes: list[str]) -> None:
    for error in errors:
        err_console.print(f"[yellow]warning:[/] {error}", markup=True, highlight=False)
    for note in notes:
        err_console.print(f"[dim]note:[/] {note}", markup=True, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("web")
    @cli_errors
    def web_command(
        ctx: typer.Context,
        urls: Annotated[list[str], typer.Argument(help="Website URLs (https://host[:port]/path).")],
        rate: Annotated[float, typer.Option("--rate", help="Requests per second to one site.")] = 5.0,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 10.0,
        templates: Annotated[
            list[Path] | None,
            typer.Option("--templates", help="Extra check-template folders or files (YAML)."),
        ] = None,
        builtin: Annotated[
            bool,
            typer.Option("--builtin-checks/--no-builtin-checks", help="Run Tianmu's own starter checks."),
        ] = True,
        expiry_days: Annotated[
            int, typer.Option("--expiry-days", help="Warn when the certificate expires sooner.")
        ] = 30,
        authorized: Annotated[
            bool,
            typer.Option(
                "--i-am-authorized",
                help="Allow sites outside private/loopback ranges: only sites you may test.",
            ),
        ] = False,
        ca_file: Annotated[
            Path | None,
            typer.Option("--ca-file", help="Trust these CA certificates (PEM) instead of the system store."),
        ] = None,
        save: SaveOpt = True,
        fail_on: FailOnOpt = FailOn.NONE,
        json: JsonOpt = False,
    ) -> None:
        """Check websites remotely: TLS, headers, cookies, CORS, exposed files, versions (GET/HEAD only)."""
        session = CliSession.of(ctx)
        options = WebOptions(
            rate=rate,
            timeout=timeout,
            expiry_days=expiry_days,
            templates=tuple(templates or ()),
            builtin_templates=builtin,
            authorized=authorized,
            tenant=session.tenant,
            save=save,
            ca_file=ca_file,
        )
        with session.store() as store, progress_reporter("Checking", total=len(urls)) as advance:
            result = run_web(store, urls, options, progress=advance, home=session.settings.home)
            session.record_run(store, "web.check", urls, saved=save, findings=len(result.findings))
        _notes(result.errors, result.notes)
        if json:
            out_console.file.write(jsonlib.dumps(result.as_json(), indent=2) + "\n")
        else:
            for site in result.sites:
                tls = site.tls or {}
                line = f"{site.url}: " + (
                    f"HTTP {site.status}" if site.reachable else "[red]not reachable[/]"
                )
                if tls:
                    line += f", {tls.get('version')}, offers {', '.join(tls.get('versions') or [])}"
                out_console.print(line)
            print_findings(result.findings)
        if not any(s.reachable for s in result.sites):
            raise typer.Exit(2)
        raise typer.Exit(exit_code_for(result.findings, fail_on))

    @app.command("domain")
    @cli_errors
    def domain_command(
        ctx: typer.Context,
        names: Annotated[list[str], typer.Argument(help="Domain names (example.com).")],
        dkim_selector: Annotated[
            list[str] | None, typer.Option("--dkim-selector", "-s", help="DKIM selectors to check.")
        ] = None,
        name: Annotated[
            list[str] | None,
            typer.Option("--name", help="Sub-names to check for dangling CNAMEs (www, shop...)."),
        ] = None,
        nameserver: Annotated[
            list[str] | None, typer.Option("--nameserver", help="Resolver address (default: the system's).")
        ] = None,
        port: Annotated[int, typer.Option("--port", help="DNS port of the resolver.")] = 53,
        axfr: Annotated[
            bool, typer.Option("--axfr/--no-axfr", help="Try a zone transfer from each name server.")
        ] = True,
        save: SaveOpt = True,
        fail_on: FailOnOpt = FailOn.NONE,
        json: JsonOpt = False,
    ) -> None:
        """Check domains: SPF, DMARC, DKIM, DNSSEC, CAA, mail transport, dangling CNAMEs, AXFR, wildcards."""
        session = CliSession.of(ctx)
        options = DomainOptions(
            nameservers=tuple(nameserver or ()),
            port=port,
            dkim_selectors=tuple(dkim_selector or ()),
            names=tuple(name or ()),
            axfr=axfr,
            tenant=session.tenant,
            save=save,
        )
        with session.store() as store, progress_reporter("Checking", total=len(names)) as advance:
            result = run_domain(store, names, options, progress=advance, home=session.settings.home)
            session.record_run(store, "domain.check", names, saved=save, findings=len(result.findings))
        _notes(result.errors, [])
        if json:
            out_console.file.write(jsonlib.dumps(result.as_json(), indent=2) + "\n")
        else:
            print_findings(result.findings)
        if not result.domains:
            raise typer.Exit(2)
        raise typer.Exit(exit_code_for(result.findings, fail_on))
