"""`tianmu assess`, `inventory`, `vulns`: look at a directory or system and say what is there."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tianmu.assets.registry import ALIASES, EXTRACTORS
from tianmu.cli.console import ExitCode, err_console, out_console, progress_reporter
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.core.models import Assessment, Finding, FindingKind, Severity
from tianmu.core.walk import WalkRules
from tianmu.reports import render
from tianmu.reports._common import finding_location, severity_label, unscored_counts
from tianmu.road.assess import AssessOptions, UnreadableTarget, assess
from tianmu.road.engines import JobLimits

__all__ = ["CrossFsOpt", "ExcludeOpt", "register", "walk_rules"]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"
    CYCLONEDX = "cyclonedx"
    HTML = "html"


class FailOn(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"
    NONE = "none"


PathArg = Annotated[
    Path, typer.Argument(help="Directory, file or mounted system root to assess.", show_default=False)
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report to this file instead of stdout.")
]
FailOnOpt = Annotated[
    FailOn,
    typer.Option(help="Exit 1 when an open finding is at or above this severity ('none': never)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        help="Leave out what matches this glob (gitignore syntax, relative to PATH; repeatable). "
        "assess, inventory, vulns and detect also read a .tianmuignore at PATH when it is owned by "
        "you or root and writable by its owner only; malware scanning never skips what it lists.",
    ),
]
FileFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Read PATH, one file, as this format whatever its name: an extractor name "
        f"({', '.join(EXTRACTORS)}) or {', '.join(ALIASES)}.",
        show_default=False,
    ),
]
CrossFsOpt = Annotated[
    bool,
    typer.Option(
        "--cross-filesystems",
        help="Enter other file systems mounted under PATH (pseudo ones such as /proc never).",
    ),
]

_SEVERITY_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}
_TABLE_LIMIT = 30


def walk_rules(
    exclude: list[str] | None, cross_filesystems: bool = False, *, ignore_file: bool = False
) -> WalkRules:
    """The walk's rules from `--exclude` and `--cross-filesystems` (shared by every walking command).

    `ignore_file`: read a trusted `.tianmuignore` (`tianmu.core.walk`); `malware scan` leaves it off,
    so a file planted in the scanned tree never hides another from it."""
    return WalkRules(
        exclude=tuple(exclude or ()), cross_filesystems=cross_filesystems, ignore_file=ignore_file
    )


def _run(session: CliSession, path: Path, options: AssessOptions) -> Assessment:
    # A target that gave nothing at all is refused by the road before anything is saved (exit 2).
    options = replace(options, refuse_unreadable=True)
    try:
        with session.store() as store, progress_reporter("Reading inventory") as advance:
            result = assess(store, path, options, progress=advance)
            session.record_run(store, "assess.run", [path], saved=options.save, findings=len(result.findings))
    except UnreadableTarget as exc:
        for error in exc.errors:
            err_console.print(f"[yellow]warning:[/] {error}", markup=True, highlight=False)
        raise
    for error in result.errors:
        err_console.print(f"[yellow]warning:[/] {error}", markup=True, highlight=False)
    if not result.knowledge_bases or not any(kb.get("kind") == "osv" for kb in result.knowledge_bases):
        err_console.print(
            "[yellow]warning:[/] the vulnerability database is empty: run `tianmu kb import PATH` "
            "or `tianmu kb update` first, or no vulnerability can be found.",
            markup=True,
        )
    return result


def _emit(result: Assessment, fmt: OutputFormat, output: Path | None) -> None:
    if fmt is OutputFormat.TABLE:
        if output is not None:
            raise InputError("--output needs a file format (json, sarif, cyclonedx or html), not table")
        print_summary(result)
        return
    text = render(result, fmt.value)
    if output is None:
        out_console.file.write(text if text.endswith("\n") else text + "\n")
        return
    # stdout is free when the report goes to a file: show the person the summary there.
    print_summary(result)
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the report: {exc.strerror}", str(output)) from exc
    err_console.print(f"{fmt.value} report written to {output}")


def _exit_code(result: Assessment, fail_on: FailOn) -> ExitCode:
    if fail_on is FailOn.NONE:
        return ExitCode.OK
    threshold = Severity(fail_on.value)
    failing = [f for f in result.findings if f.status.value == "open" and f.severity.at_least(threshold)]
    return ExitCode.FINDINGS if failing else ExitCode.OK


def print_summary(result: Assessment) -> None:
    """The situation summary a person reads at the terminal."""
    console = out_console
    by_severity = Counter(f.severity for f in result.findings)
    kev = sum(1 for f in result.findings if f.data.get("kev"))
    ecosystems = Counter(c.ecosystem for c in result.components)
    console.rule(f"[bold]Tianmu situation summary[/] — {escape(result.target)}")
    # The label comes from the target (a remote in .git/config): never read as markup.
    console.print(
        f"Asset: [bold]{escape(result.asset.display)}[/] ({result.asset.kind.value})", highlight=False
    )
    console.print(
        f"Components: [bold]{len(result.components)}[/] from {result.files_read} inventory file(s)"
        + (f" ({', '.join(f'{k} {v}' for k, v in ecosystems.most_common())})" if ecosystems else "")
    )
    if result.unresolved:
        console.print(
            f"Unresolved dependencies (no exact version, not checked): [bold]{len(result.unresolved)}[/]"
        )
    if result.errors:
        console.print(f"Inputs that could not be read: [bold yellow]{len(result.errors)}[/]")
    unscored = unscored_counts(result.findings)
    parts = [
        f"[{_SEVERITY_STYLE[s]}]{by_severity.get(s, 0)} {s.value}[/]"
        + (f" ({unscored[s.value]} unscored)" if unscored.get(s.value) else "")
        for s in Severity
        if by_severity.get(s, 0)
    ]
    console.print(f"Findings: [bold]{len(result.findings)}[/]" + (f" — {', '.join(parts)}" if parts else ""))
    if kev:
        console.print(f"[bold red]Known exploited (CISA KEV): {kev}[/] — fix these first")
    if result.risk is not None:
        console.print(
            f"Risk: [bold]{result.risk['score']:.1f}/100[/] ({result.risk['level']}) — see `tianmu risk`"
        )
    for incident in result.incidents[:5]:
        console.print(
            f"[bold]Incident[/] {incident.id} [{incident.severity.value}] {incident.title}", highlight=False
        )
    for note in result.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)
    vulns = [f for f in result.findings if f.kind is FindingKind.VULNERABILITY]
    others = [f for f in result.findings if f.kind is not FindingKind.VULNERABILITY]
    if not vulns and result.components:
        console.print("[green]No known vulnerability affects the components found.[/]")
    if vulns:
        _print_vulnerabilities(vulns)
    if others:
        _print_other_findings(others)


def _more(shown: int, total: int) -> None:
    if total > shown:
        out_console.print(f"… and {total - shown} more: use --format html or json for the whole list.")


def _print_vulnerabilities(findings: list[Finding]) -> None:
    table = Table(show_lines=False, header_style="bold", expand=False, title="Vulnerabilities")
    for column in ("Severity", "Advisory", "Package", "Installed", "Fixed in", "Where", "KEV", "EPSS"):
        table.add_column(column, overflow="fold")
    for finding in findings[:_TABLE_LIMIT]:
        comp = finding.component
        epss = finding.data.get("epss")
        table.add_row(
            f"[{_SEVERITY_STYLE[finding.severity]}]{severity_label(finding)}[/]",
            finding.rule_id,
            comp.name if comp else finding.asset.name,
            comp.version if comp else "",
            # A distribution-owned package's fix may be backported: the upstream version is no verdict.
            (", ".join(finding.data.get("fixed_versions") or []) or "—")
            + (" (upstream)" if finding.data.get("backport_note") else ""),
            str(comp.location) if comp and comp.location else "",
            "[bold red]yes[/]" if finding.data.get("kev") else "",
            f"{epss:.1%}" if isinstance(epss, float) else "",
        )
    out_console.print(table)
    _more(_TABLE_LIMIT, len(findings))


def _print_other_findings(findings: list[Finding]) -> None:
    """Malware, detections, intel hits, exposures: one table, most severe first."""
    table = Table(show_lines=False, header_style="bold", expand=False, title="Other findings")
    for column in ("Severity", "Kind", "Rule", "Title", "Where"):
        table.add_column(column, overflow="fold")
    ranked = sorted(findings, key=lambda f: -f.severity.rank)
    for finding in ranked[:_TABLE_LIMIT]:
        where = finding_location(finding)
        table.add_row(
            f"[{_SEVERITY_STYLE[finding.severity]}]{finding.severity.value}[/]",
            finding.kind.value,
            finding.rule_id,
            finding.title,
            str(where) if where else finding.asset.name,
        )
    out_console.print(table)
    _more(_TABLE_LIMIT, len(findings))


def register(app: typer.Typer) -> None:
    @app.command("assess")
    @cli_errors
    def assess_command(
        ctx: typer.Context,
        path: PathArg,
        fmt: FormatOpt = OutputFormat.TABLE,
        output: OutputOpt = None,
        fail_on: FailOnOpt = FailOn.INFO,
        exclude: ExcludeOpt = None,
        cross_filesystems: CrossFsOpt = False,
    ) -> None:
        """Inventory PATH, run every engine, store the results and report them."""
        session = CliSession.of(ctx)
        options = AssessOptions(
            tenant=session.tenant,
            home=session.settings.home,
            walk=walk_rules(exclude, cross_filesystems, ignore_file=True),
            limits=JobLimits.from_settings(session.settings),
        )
        result = _run(session, path, options)
        _emit(result, fmt, output)
        raise typer.Exit(_exit_code(result, fail_on))

    @app.command("inventory")
    @cli_errors
    def inventory_command(
        ctx: typer.Context,
        path: PathArg,
        json: JsonOpt = False,
        exclude: ExcludeOpt = None,
        cross_filesystems: CrossFsOpt = False,
        file_format: FileFormatOpt = None,
    ) -> None:
        """List the software components found under PATH (nothing is stored; no engine runs)."""
        session = CliSession.of(ctx)
        with session.store() as store, progress_reporter("Reading inventory") as advance:
            options = AssessOptions(
                tenant=session.tenant,
                engines=(),
                save=False,
                walk=walk_rules(exclude, cross_filesystems, ignore_file=True),
                file_format=file_format,
                limits=JobLimits.from_settings(session.settings),
            )
            result = assess(store, path, options, progress=advance)
        for error in result.errors:
            err_console.print(f"[yellow]warning:[/] {error}", markup=True, highlight=False)
        if json:
            _emit(result, OutputFormat.JSON, None)
        else:
            table = Table(header_style="bold")
            for column in ("Ecosystem", "Name", "Version", "Where", "purl"):
                table.add_column(column, overflow="fold")
            for comp in result.components:
                table.add_row(comp.ecosystem, comp.name, comp.version, str(comp.location or ""), comp.purl)
            out_console.print(table)
            for item in result.unresolved:
                out_console.print(
                    f"[yellow]unresolved:[/] {item.location}: {item.requirement} ({item.reason})"
                )
        if result.errors and result.files_read == 0:
            raise typer.Exit(ExitCode.USAGE)

    @app.command("vulns")
    @cli_errors
    def vulns_command(
        ctx: typer.Context,
        path: PathArg,
        json: JsonOpt = False,
        fail_on: FailOnOpt = FailOn.INFO,
        exclude: ExcludeOpt = None,
        cross_filesystems: CrossFsOpt = False,
        file_format: FileFormatOpt = None,
    ) -> None:
        """Only the vulnerability part of `assess`: known vulnerabilities of the components under PATH.

        Only the inventory and the vulnerability engine run (nothing is stored)."""
        session = CliSession.of(ctx)
        options = AssessOptions(
            tenant=session.tenant,
            engines=("vulnerability",),
            save=False,
            home=session.settings.home,
            walk=walk_rules(exclude, cross_filesystems, ignore_file=True),
            file_format=file_format,
            limits=JobLimits.from_settings(session.settings),
        )
        result = _run(session, path, options)
        _emit(result, OutputFormat.JSON if json else OutputFormat.TABLE, None)
        raise typer.Exit(_exit_code(result, fail_on))
