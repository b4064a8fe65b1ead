"""`tianmu discover`: hosts and services on the network, fingerprinted, stored, diffed, audited.

The command only reads options and prints: the work is `tianmu.road.network.run_discover`."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tianmu.assets.network.engine import DiscoverOptions
from tianmu.assets.network.engine import Progress as StageProgress
from tianmu.assets.network.inventory import list_services
from tianmu.assets.network.probes import ProbeOptions
from tianmu.assets.network.results import DiscoveryResult
from tianmu.cli.assess import _SEVERITY_STYLE, FailOn
from tianmu.cli.console import ExitCode, err_console, out_console
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.core.models import Finding, Severity
from tianmu.network.audit import list_scans
from tianmu.network.targets import parse_ports
from tianmu.road.network import run_discover

__all__ = ["exit_code_for", "register", "register_listings", "stage_progress"]


class Engine(StrEnum):
    BUILTIN = "builtin"
    NMAP = "nmap"


@contextmanager
def stage_progress(totals: dict[str, int]) -> Iterator[StageProgress | None]:
    """A Rich bar per stage on a terminal; nothing elsewhere."""
    if not err_console.is_terminal:
        yield None
        return
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks = {name: bar.add_task(name, total=total or None) for name, total in totals.items()}

        def advance(stage: str, n: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=None)
            bar.update(tasks[stage], advance=n)

        yield advance


def exit_code_for(findings: list[Finding], fail_on: FailOn) -> ExitCode:
    if fail_on is FailOn.NONE:
        return ExitCode.OK
    threshold = Severity(fail_on.value)
    return ExitCode.FINDINGS if any(f.severity.at_least(threshold) for f in findings) else ExitCode.OK


def _where(finding: Finding) -> str:
    evidence = finding.evidence
    if evidence.get("url"):
        return str(evidence["url"])
    if "port" in evidence:
        return f"{(evidence.get('entities') or {}).get('ip', ['?'])[0]}:{evidence['port']}"
    return str(evidence.get("domain") or finding.asset.name)


def print_findings(findings: list[Finding]) -> None:
    if not findings:
        out_console.print("[green]No finding.[/]")
        return
    table = Table(header_style="bold", title="Findings")
    for column in ("Severity", "Kind", "Rule", "Title", "Where"):
        table.add_column(column, overflow="fold")
    for f in findings:
        style = _SEVERITY_STYLE[f.severity]
        table.add_row(f"[{style}]{f.severity.value}[/]", f.kind.value, f.rule_id, f.title, _where(f))
    out_console.print(table)


def _print(result: DiscoveryResult) -> None:
    table = Table(header_style="bold", title=f"Services ({result.engine} engine)")
    for column in ("Host", "Port", "Service", "Product", "Version", "CPE", "TLS"):
        table.add_column(column, overflow="fold")
    for host in result.hosts:
        name = f"{host.hostname} ({host.address})" if host.hostname else host.address
        for svc in host.services:
            cert = (svc.tls or {}).get("certificate") or {}
            tls = ""
            if svc.tls:
                tls = f"{svc.tls.get('version')} {cert.get('key_type', '')}"
                if cert.get("expired"):
                    tls += " [red]expired[/]"
                elif cert.get("self_signed"):
                    tls += " [yellow]self-signed[/]"
            table.add_row(
                name,
                f"{svc.port}/{svc.transport}",
                svc.service or "",
                svc.product or "",
                svc.version or "",
                svc.cpe or "",
                tls,
            )
    out_console.print(table)
    for host in result.hosts:
        if host.diff and not host.diff.first_scan and (host.diff.appeared or host.diff.disappeared):
            out_console.print(
                f"{host.address}: opened since the last scan: {host.diff.appeared or 'none'}; "
                f"closed: {host.diff.disappeared or 'none'}"
            )
    open_ports = sum(len(h.services) for h in result.hosts)
    out_console.print(
        f"{len(result.hosts)} host(s), {result.ports_scanned} port(s) probed, {open_ports} open, "
        f"in {result.elapsed:.2f} s"
    )
    print_findings(result.findings)


def register(app: typer.Typer) -> None:
    @app.command("discover")
    @cli_errors
    def discover_command(
        ctx: typer.Context,
        targets: Annotated[
            list[str] | None,
            typer.Argument(
                help="IPs, CIDRs (10.0.0.0/24), ranges (10.0.0.1-20), host names.", show_default=False
            ),
        ] = None,
        ports: Annotated[
            str, typer.Option("--ports", "-p", help="22,80,8000-8100; `top`; `-` or `all` for 1-65535.")
        ] = "top",
        rate: Annotated[
            float | None, typer.Option("--rate", help="Connection attempts per second (global).")
        ] = None,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for a handshake.")] = 1.5,
        retries: Annotated[
            int, typer.Option("--retries", help="Extra attempts for a port that did not answer.")
        ] = 1,
        per_host: Annotated[int, typer.Option("--per-host", help="Attempts in flight per host.")] = 1024,
        engine: Annotated[
            Engine, typer.Option("--engine", help="builtin (default) or nmap (drives nmap -sT -sV).")
        ] = Engine.BUILTIN,
        fingerprint: Annotated[
            bool, typer.Option("--fingerprint/--no-fingerprint", help="Identify services and versions.")
        ] = True,
        authorized: Annotated[
            bool,
            typer.Option(
                "--i-am-authorized",
                help="Allow targets outside private/loopback ranges: only networks you may scan.",
            ),
        ] = False,
        save: Annotated[
            bool, typer.Option("--save/--no-save", help="Record hosts, services and findings in the store.")
        ] = True,
        fail_on: Annotated[
            FailOn, typer.Option("--fail-on", help="Exit 1 when a finding is at least this severe.")
        ] = FailOn.NONE,
        nmap_xml: Annotated[
            Path | None,
            typer.Option(
                "--nmap-xml", help="Import an nmap XML file (a scan made elsewhere) instead of scanning."
            ),
        ] = None,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    ) -> None:
        """Find open TCP ports, identify the services behind them, and report exposures."""
        session = CliSession.of(ctx)
        targets = targets or []
        if not targets and nmap_xml is None:
            raise InputError("name at least one target (or --nmap-xml FILE)")
        if targets and nmap_xml is not None:
            raise InputError("give targets or --nmap-xml, not both")
        port_count = 0 if nmap_xml is not None else len(parse_ports(ports))
        options = DiscoverOptions(
            ports=ports,
            rate=rate,
            timeout=timeout,
            retries=retries,
            per_host=per_host,
            engine=engine.value,
            fingerprint=fingerprint,
            authorized=authorized,
            tenant=session.tenant,
            save=save,
            probe=ProbeOptions(),
            nmap_xml=nmap_xml,
        )
        with session.store() as store, stage_progress({"sweep": port_count * len(targets)}) as advance:
            result = run_discover(store, targets, options, progress=advance, home=session.settings.home)
            scanned: list[object] = [*targets] if targets else [nmap_xml]
            session.record_run(
                store,
                "discover.run",
                scanned,
                saved=save,
                findings=len(result.findings),
                authorized=authorized,
            )
        for note in result.notes:
            err_console.print(f"[dim]note:[/] {note}", markup=True, highlight=False)
        if result.self_connects:
            err_console.print(f"[dim]note:[/] {result.self_connects} loopback self-connect(s) ignored")
        if json:
            out_console.file.write(jsonlib.dumps(result.as_json(), indent=2) + "\n")
        else:
            _print(result)
        raise typer.Exit(exit_code_for(result.findings, fail_on))


def register_listings(app: typer.Typer) -> None:
    """`tianmu services` (what discovery stored) and `tianmu scans` (the scan audit trail)."""

    @app.command("services")
    @cli_errors
    def services_command(
        ctx: typer.Context,
        state: Annotated[
            str, typer.Option("--state", help="open, closed or all.", case_sensitive=False)
        ] = "open",
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    ) -> None:
        """Services found by `tianmu discover`, with when they were first and last seen."""
        session = CliSession.of(ctx)
        if state not in ("open", "closed", "all"):
            raise InputError(f"--state must be open, closed or all, not {state!r}")
        with session.store() as store:
            rows = list_services(store, session.tenant, state=None if state == "all" else state)
        if json:
            data = [
                {
                    "asset": r.asset,
                    "address": r.service.address,
                    "port": r.service.port,
                    "transport": r.service.transport,
                    "state": r.state,
                    "service": r.service.service,
                    "product": r.service.product,
                    "version": r.service.version,
                    "cpe": r.service.cpe,
                    "first_seen": r.first_seen.isoformat(),
                    "last_seen": r.last_seen.isoformat(),
                    "closed_at": r.closed_at.isoformat() if r.closed_at else None,
                }
                for r in rows
            ]
            out_console.file.write(jsonlib.dumps(data, indent=2) + "\n")
            return
        table = Table(header_style="bold", title=f"Services ({state})")
        for column in ("Host", "Port", "State", "Service", "Product", "Version", "First seen", "Last seen"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(
                r.asset if r.asset == r.service.address else f"{r.asset} ({r.service.address})",
                f"{r.service.port}/{r.service.transport}",
                r.state,
                r.service.service or "",
                r.service.product or "",
                r.service.version or "",
                r.first_seen.strftime("%Y-%m-%d %H:%M"),
                r.last_seen.strftime("%Y-%m-%d %H:%M"),
            )
        out_console.print(table)

    @app.command("scans")
    @cli_errors
    def scans_command(
        ctx: typer.Context,
        limit: Annotated[int, typer.Option("--limit", help="How many of the latest scans.")] = 50,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    ) -> None:
        """The scan audit trail: who scanned what, when, and whether they declared authorization."""
        session = CliSession.of(ctx)
        with session.store() as store:
            rows = list_scans(store, session.tenant, limit)
        if json:
            data = [
                {
                    "id": r.id,
                    "actor": r.actor,
                    "action": r.action,
                    "started": r.started.isoformat(),
                    "finished": r.finished.isoformat() if r.finished else None,
                    "targets": r.targets,
                    "ports": r.ports,
                    "authorized": r.authorized,
                    "engine": r.engine,
                    "summary": r.summary,
                }
                for r in rows
            ]
            out_console.file.write(jsonlib.dumps(data, indent=2) + "\n")
            return
        table = Table(header_style="bold", title="Scan audit trail")
        for column in ("Started", "Actor", "Action", "Targets", "Ports", "Authorized", "Engine", "Summary"):
            table.add_column(column, overflow="fold")
        for r in rows:
            summary = ", ".join(f"{k} {v}" for k, v in r.summary.items())
            table.add_row(
                r.started.strftime("%Y-%m-%d %H:%M:%S"),
                r.actor,
                r.action,
                " ".join(r.targets),
                r.ports or "",
                "yes" if r.authorized else "no",
                r.engine or "",
                summary,
            )
        out_console.print(table)
