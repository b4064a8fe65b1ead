"""`tianmu detect` (Sigma rules over log files) and `tianmu rules status` (the rule base)."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tianmu.cli.assess import CrossFsOpt, ExcludeOpt, walk_rules
from tianmu.cli.console import ExitCode, err_console, out_console, progress_reporter
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.core.models import Severity
from tianmu.detect.kb import rules_status
from tianmu.readers.sources import FORMATS
from tianmu.reports.json_report import finding_to_dict
from tianmu.road.engines import EngineSetup, JobLimits, detection_engine
from tianmu.road.logs import DetectJob, run_detect

__all__ = ["register"]

_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


class FailOn(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"
    NONE = "none"


def _parse_field_map(items: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise InputError(f"--field-map {item!r}: SOURCE=TARGET expected")
        mapping[source] = target
    return mapping


@contextmanager
def _compiling() -> Iterator[None]:
    """A spinner while rules compile (seconds on a cold start; nothing shown when not on a terminal)."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status("Loading Sigma rules (compiled once, then cached)..."):
        yield


def register(app: typer.Typer) -> None:
    @app.command()
    @cli_errors
    def detect(
        ctx: typer.Context,
        paths: Annotated[
            list[Path],
            typer.Argument(
                help="Log files or folders (EVTX, syslog, journald, auditd, "
                "access logs, Suricata EVE, JSON lines, CSV; gz/bz2/xz/zip)."
            ),
        ],
        rules: Annotated[
            list[Path] | None,
            typer.Option(
                "--rules",
                "-r",
                help="Sigma rule file or folder to use instead of the imported rule sets "
                "(repeatable; the starter pack is always used).",
            ),
        ] = None,
        log_format: Annotated[
            str | None, typer.Option("--format", help=f"Force the log format: {', '.join(FORMATS)}.")
        ] = None,
        field_map: Annotated[
            list[str] | None,
            typer.Option("--field-map", help="Rename a field of JSON/CSV logs: SOURCE=TARGET."),
        ] = None,
        workers: Annotated[
            int | None, typer.Option(help="Processes reading files in parallel (default: CPUs).")
        ] = None,
        fail_on: Annotated[
            FailOn, typer.Option(help="Exit 1 when a detection is at or above this severity ('none': never).")
        ] = FailOn.INFO,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
        exclude: ExcludeOpt = None,
        cross_filesystems: CrossFsOpt = False,
    ) -> None:
        """Run Sigma detection rules over logs; every alert points at its file and record."""
        session = CliSession.of(ctx)
        if log_format is not None and log_format not in FORMATS:
            raise InputError(f"--format {log_format!r}: one of {', '.join(FORMATS)} expected")
        for path in paths:
            if not path.exists():
                raise InputError("no such file or directory", str(path))
        conf = session.settings
        job = DetectJob(
            paths,
            tenant=conf.tenant,
            home=conf.home,
            rules=rules,
            fmt=log_format,
            field_map=_parse_field_map(field_map or []),
            workers=workers,
            walk=walk_rules(exclude, cross_filesystems, ignore_file=True),
            limits=JobLimits.from_settings(conf),
        )
        with session.store() as store:
            with _compiling():
                engine = detection_engine(EngineSetup(store, conf.home, limits=job.limits), rules)
            with progress_reporter("Detecting") as advance:
                result = run_detect(store, job, engine, progress=advance)
            session.record_run(store, "detect.run", paths, saved=job.save, findings=len(result.findings))
        base = engine.base
        stats = result.stats
        if json:
            document = {
                "findings": [finding_to_dict(f) for f in result.findings],
                "summary": {
                    "files": stats.files,
                    "events": stats.events,
                    "malformed": stats.malformed_count,
                    "findings": len(result.findings),
                    "rules": len(base.rules),
                    "correlations": len(base.correlations),
                    "unusable_rules": len(base.unusable),
                },
                "errors": stats.errors,
                "skipped_files": stats.skipped_files,
                "notes": [*result.walk_notes, *result.limit_notes],
            }
            out_console.file.write(jsonlib.dumps(document, indent=2, default=str) + "\n")
        else:
            for error in stats.errors:
                err_console.print(f"[yellow]warning:[/] {error}", markup=True, highlight=False)
            for note in [*result.walk_notes, *result.limit_notes]:
                err_console.print(f"[dim]note:[/] {note}", markup=True, highlight=False)
            table = Table(header_style="bold")
            for column in ("Severity", "Rule", "Evidence", "Time", "Entities"):
                table.add_column(column)
            for finding in result.findings:
                ev = finding.evidence
                where = f"{ev.get('path')}:{ev.get('record') or ev.get('line') or ''}"
                entities = "; ".join(f"{k}={','.join(v[:3])}" for k, v in ev.get("entities", {}).items() if v)
                table.add_row(
                    f"[{_STYLE[finding.severity]}]{finding.severity.value}[/]",
                    finding.title,
                    where,
                    str(ev.get("time") or ""),
                    entities,
                )
            if result.findings:
                out_console.print(table)
            out_console.print(
                f"{len(result.findings)} detections in {stats.events} events from {stats.files} files "
                f"({stats.malformed_count} malformed records skipped; {len(base.rules)} rules, "
                f"{len(base.correlations)} correlations, {len(base.unusable)} unusable rules)"
            )
        if stats.files == 0 and stats.events == 0:
            err_console.print("[bold red]error:[/] no log file could be read", markup=True)
            raise typer.Exit(ExitCode.USAGE)
        if fail_on is not FailOn.NONE:
            threshold = Severity(fail_on.value)
            if any(f.severity.at_least(threshold) for f in result.findings):
                raise typer.Exit(ExitCode.FINDINGS)

    group = typer.Typer(
        help="Detection rules (Sigma): what is loaded and what cannot be used.", no_args_is_help=True
    )
    app.add_typer(group, name="rules")

    @group.command("status")
    @cli_errors
    def status(
        ctx: typer.Context,
        rules: Annotated[
            list[Path] | None,
            typer.Option("--rules", "-r", help="Report on this rule file or folder instead."),
        ] = None,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
        all_unusable: Annotated[
            bool, typer.Option("--all", help="List every unusable rule (default: 20 per set).")
        ] = False,
    ) -> None:
        """Rule sets in use: rules, correlations, and the rules that cannot be used, with the reason."""
        session = CliSession.of(ctx)
        conf = session.settings
        with session.store() as store, _compiling():
            rows = rules_status(store, conf.home, rules)
        if json:
            document = [
                {
                    "name": row.name,
                    "path": row.path,
                    "files": row.files,
                    "rules": row.rules,
                    "correlations": row.correlations,
                    "unusable": [{"path": u.path, "rule": u.rule, "reason": u.reason} for u in row.unusable],
                }
                for row in rows
            ]
            out_console.file.write(jsonlib.dumps(document, indent=2) + "\n")
            return
        table = Table(header_style="bold")
        for column in ("Rule set", "Files", "Rules", "Correlations", "Unusable", "Path"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row.name,
                str(row.files),
                str(row.rules),
                str(row.correlations),
                str(len(row.unusable)),
                row.path,
            )
        out_console.print(table)
        for row in rows:
            shown = row.unusable if all_unusable else row.unusable[:20]
            for item in shown:
                out_console.print(f"[yellow]unusable:[/] {item}", markup=True, highlight=False)
            if len(shown) < len(row.unusable):
                out_console.print(
                    f"... and {len(row.unusable) - len(shown)} more in {row.name} (--all to list them)"
                )
