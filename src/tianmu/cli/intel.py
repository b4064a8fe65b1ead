"""`tianmu intel`: threat-intelligence feeds — import, match logs, look up one value, serve TAXII."""

from __future__ import annotations

import json as jsonlib
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tianmu.cli.console import ExitCode, err_console, out_console, progress_reporter
from tianmu.cli.kb import print_reports, record_import
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.core.models import Finding
from tianmu.intel.attack import technique_info
from tianmu.intel.engine import IntelMatcher
from tianmu.intel.kb import import_feed
from tianmu.intel.taxii import pull_into
from tianmu.road.engines import JobLimits
from tianmu.road.logs import run_intel_match
from tianmu.store.knowledge import ImportReport

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$", re.IGNORECASE)


def _column_map(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    mapping: dict[str, str] = {}
    for item in items:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise InputError(f"--column {item!r}: expected FIELD=HEADER (e.g. value=indicator)")
        mapping[field.strip()] = column.strip()
    return mapping


def _finding_row(finding: Finding) -> dict[str, Any]:
    evidence = finding.evidence
    return {
        "indicator": evidence.get("indicator"),
        "observed": evidence.get("observed"),
        "field": evidence.get("field"),
        "path": evidence.get("path"),
        "line": evidence.get("line"),
        "time": evidence.get("time"),
        "sightings": evidence.get("sightings"),
        "severity": finding.severity.value,
        "title": finding.title,
        "sources": finding.data.get("sources"),
        "confidence": finding.data.get("confidence"),
        "malware": finding.data.get("malware"),
        "actors": finding.data.get("actors"),
        "techniques": list(finding.techniques),
        "fingerprint": finding.fingerprint,
    }


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Threat intelligence: STIX/TAXII/MISP/list feeds, IOC matching over logs, look-ups, ATT&CK.",
        no_args_is_help=True,
    )
    app.add_typer(group, name="intel")

    @group.command("import")
    @cli_errors
    def import_command(
        ctx: typer.Context,
        paths: Annotated[
            list[Path] | None,
            typer.Argument(
                help="Feed files or folders: STIX bundle, MISP feed, maltrail, LOKI IOCs, CSV, list."
            ),
        ] = None,
        fmt: Annotated[
            str | None,
            typer.Option(
                "--format", help="stix, misp, maltrail, signature-base, csv or list (default: detect)."
            ),
        ] = None,
        source: Annotated[str | None, typer.Option(help="Source name (default: from the file name).")] = None,
        confidence: Annotated[
            int | None, typer.Option(min=0, max=100, help="Default confidence of the feed's indicators.")
        ] = None,
        column: Annotated[
            list[str] | None,
            typer.Option(
                "--column", help="CSV column map FIELD=HEADER (value, type, confidence, valid_until...)."
            ),
        ] = None,
        kind: Annotated[
            str | None, typer.Option("--type", help="Indicator type of every row (default: guess per value).")
        ] = None,
        exact: Annotated[
            bool, typer.Option(help="Domains match only themselves, not their subdomains.")
        ] = False,
        taxii: Annotated[
            str | None,
            typer.Option(help="Pull a TAXII 2.1 collection URL (from where the last pull stopped)."),
        ] = None,
        user: Annotated[str | None, typer.Option(help="TAXII user name.")] = None,
        password: Annotated[
            str | None, typer.Option(envvar="TIANMU_TAXII_PASSWORD", help="TAXII password.")
        ] = None,
        token: Annotated[
            str | None,
            typer.Option(
                envvar="TIANMU_TAXII_TOKEN", help="TAXII Bearer token (e.g. another Tianmu's API token)."
            ),
        ] = None,
        json: JsonOpt = False,
    ) -> None:
        """Import threat-intelligence feeds (offline), or pull a TAXII collection."""
        session = CliSession.of(ctx)

        if not paths and not taxii:
            raise InputError("give feed files/folders to import, or --taxii URL")
        reports: list[ImportReport] = []
        with session.store() as store, progress_reporter("Importing") as advance:
            home = session.settings.home
            for path in paths or []:
                reports += import_feed(
                    store,
                    path,
                    home=home,
                    fmt=fmt,
                    source=source,
                    confidence=confidence,
                    columns=_column_map(column),
                    kind=kind,
                    exact=exact,
                    progress=advance,
                )
            if taxii:
                reports.append(
                    pull_into(
                        store, taxii, home=home, user=user, password=password, token=token, progress=advance
                    )
                )
            where = [str(p) for p in paths or []] + ([taxii] if taxii else [])
            record_import(session, store, "intel.import", ", ".join(where), reports, False)
        print_reports(reports, json)
        if any(r.status == "failed" for r in reports) or (
            reports and all(r.record_count == 0 and r.errors for r in reports)
        ):
            raise typer.Exit(ExitCode.USAGE)

    @group.command("match")
    @cli_errors
    def match_command(
        ctx: typer.Context,
        paths: Annotated[list[Path], typer.Argument(help="Log files or folders (every file in a folder).")],
        json: JsonOpt = False,
    ) -> None:
        """Match logs against the intel base. Exit 1 when an indicator is seen, 0 when none is."""
        session = CliSession.of(ctx)
        conf = session.settings
        with session.store() as store, progress_reporter("Matching") as advance:
            limits = JobLimits.from_settings(conf)
            matched = run_intel_match(
                store, paths, tenant=conf.tenant, home=conf.home, progress=advance, limits=limits
            )
            session.record_run(store, "intel.match", paths, findings=len(matched.findings))
        findings, errors = matched.findings, matched.errors
        for error in errors:
            err_console.print(f"[yellow]warning:[/] {error}", markup=True, highlight=False)
        rows = [_finding_row(f) for f in findings]
        if json:
            out_console.file.write(jsonlib.dumps(rows, indent=2) + "\n")
        elif not rows:
            out_console.print("No known indicator seen.")
        else:
            table = Table(header_style="bold")
            for name in ("Severity", "Indicator", "Where", "Seen", "Sources", "Context"):
                table.add_column(name, overflow="fold")
            for row, finding in zip(rows, findings, strict=True):
                where = f"{row['path']}:{row['line']}" if row["line"] else str(row["path"])
                context = ", ".join((row["malware"] or []) + (row["actors"] or []) + row["techniques"])
                table.add_row(
                    finding.severity.value,
                    f"{row['indicator']['type']} {row['indicator']['value']}",
                    where,
                    str(row["sightings"]),
                    ", ".join(row["sources"] or []),
                    context,
                )
            out_console.print(table)
        if findings:
            raise typer.Exit(ExitCode.FINDINGS)

    @group.command("lookup")
    @cli_errors
    def lookup_command(
        ctx: typer.Context,
        value: Annotated[
            str, typer.Argument(help="IP, domain, URL, hash, e-mail (defanged is fine) or T1234.")
        ],
        json: JsonOpt = False,
    ) -> None:
        """What the base knows about one value (or ATT&CK technique). Exit 1 when nothing is known."""
        session = CliSession.of(ctx)
        with session.store() as store:
            if _TECHNIQUE.match(value.strip()):
                info = technique_info(store, [value])
                if json:
                    out_console.file.write(jsonlib.dumps(info, indent=2) + "\n")
                for tid, item in info.items():
                    if not json:
                        out_console.print(
                            f"{tid} {item['full_name']} — {', '.join(item['tactics'])} ({item['url']})"
                        )
                if not info:
                    if not json:
                        out_console.print(
                            f"{value}: not in the ATT&CK base (`tianmu kb import enterprise-attack.json`)"
                        )
                    raise typer.Exit(ExitCode.FINDINGS)
                return
            records = IntelMatcher.open(store, session.settings.home).lookup(value)
        if json:
            out_console.file.write(jsonlib.dumps([r.as_dict() for r in records], indent=2) + "\n")
        elif not records:
            out_console.print(f"{value}: not a known indicator")
        for record in records if not json else []:
            until = record.valid_until.isoformat() if record.valid_until else "no expiry"
            out_console.print(
                f"[bold]{record.type} {record.value}[/]  confidence {record.confidence}, {until}"
            )
            for label, values in (
                ("sources", record.sources),
                ("malware", record.malware),
                ("actors", record.actors),
                ("techniques", record.techniques),
                ("labels", record.labels),
                ("references", record.references),
                ("stated at", record.origins[:5]),
            ):
                if values:
                    out_console.print(f"  {label}: {', '.join(values)}", markup=False)
            if record.description:
                out_console.print(f"  {record.description}", markup=False)
        if not records:
            raise typer.Exit(ExitCode.FINDINGS)

    @group.command("serve")
    @cli_errors
    def serve_command(
        ctx: typer.Context,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 9470,
    ) -> None:
        """Serve the intel base as a read-only TAXII 2.1 server (discovery at /taxii2/)."""
        session = CliSession.of(ctx)
        # uvicorn: heavy, optional for every intel command but serve.
        import uvicorn

        # FastAPI (the TAXII server's app): heavy, optional for every intel command but serve.
        from tianmu.intel.taxii_server import create_taxii_app

        with session.store() as store:
            err_console.print(f"TAXII 2.1 discovery: http://{host}:{port}/taxii2/")
            uvicorn.run(create_taxii_app(store), host=host, port=port, log_level="warning")
