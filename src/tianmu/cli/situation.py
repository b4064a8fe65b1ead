"""`tianmu incidents`, `trace`, `evidence`, `alerts`, `risk`: the situation, for the person on call.

Each command is a thin call into `tianmu.situation`; exit codes: 0 fine, 1 a verification or delivery
failed, 2 bad input.
"""

from __future__ import annotations

import json as jsonlib
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tianmu.cli.alerting import register_alerts
from tianmu.cli.console import ExitCode, err_console, out_console, progress_reporter
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.core.models import FindingKind, TriageStatus
from tianmu.identity.audittip import exported_tip
from tianmu.readers import iter_events
from tianmu.reports.json_report import incident_to_dict
from tianmu.road.evidence import quarantine_lookup
from tianmu.situation import (
    find_incident,
    insurance_summary,
    load_assets,
    load_incidents,
    open_findings,
    posture_history,
    rebuild_incidents,
    score_findings,
    set_incident,
    store_technique_resolver,
    trace,
    update_incidents,
)
from tianmu.situation.evidence import export_bundle, load_signer, verify_bundle
from tianmu.situation.evidencekeys import public_key_path
from tianmu.situation.tactics import TACTIC_NAMES
from tianmu.store.repository import list_findings

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
_LEVEL_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}


def _dump(data: Any) -> None:
    out_console.file.write(jsonlib.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _short(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def _incidents(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Incidents: correlated findings, their stage, status and assignee.", no_args_is_help=True
    )
    app.add_typer(group, name="incidents")

    @group.command("list")
    @cli_errors
    def list_command(
        ctx: typer.Context,
        status: Annotated[list[TriageStatus] | None, typer.Option(help="Only these statuses.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many (latest activity first).")] = 100,
        json: JsonOpt = False,
    ) -> None:
        """The tenant's incidents, latest activity first."""
        session = CliSession.of(ctx)
        with session.store() as store:
            rows = load_incidents(store, session.tenant, statuses=status, limit=limit)
        if json:
            _dump([incident_to_dict(i) for i in rows])
            return
        table = Table(header_style="bold")
        for column in ("Id", "Severity", "Stage", "Title", "Findings", "Status", "Assignee", "Last seen"):
            table.add_column(column, overflow="fold")
        for i in rows:
            table.add_row(
                i.id,
                f"[{_STYLE[i.severity.value]}]{i.severity.value}[/]",
                TACTIC_NAMES.get(i.stage or "", "—"),
                i.title,
                str(len(i.finding_fingerprints)),
                i.status.value,
                i.assignee or "",
                _short(i.last_seen),
            )
        out_console.print(table)
        if not rows:
            out_console.print("No incidents.")

    @group.command("show")
    @cli_errors
    def show_command(
        ctx: typer.Context,
        incident_id: Annotated[str, typer.Argument(help="Incident id (INC-…) or a unique prefix.")],
        json: JsonOpt = False,
    ) -> None:
        """One incident: its entities and its timeline on the kill chain."""
        session = CliSession.of(ctx)
        with session.store() as store:
            incident = find_incident(store, session.tenant, incident_id)
        if json:
            _dump(incident_to_dict(incident))
            return
        out_console.rule(f"[bold]{incident.id}[/] {incident.title}")
        out_console.print(
            f"Severity [{_STYLE[incident.severity.value]}]{incident.severity.value}[/] · stage "
            f"[bold]{TACTIC_NAMES.get(incident.stage or '', '—')}[/] · {incident.status.value}"
            + (f" · assigned to {incident.assignee}" if incident.assignee else "")
        )
        out_console.print(
            "Kill chain: " + " → ".join(TACTIC_NAMES[t] for t in incident.tactics) if incident.tactics else ""
        )
        for kind, values in incident.entities.items():
            out_console.print(f"{kind}: {', '.join(values)}")
        table = Table(header_style="bold", title="Timeline")
        for column in ("Time (UTC)", "Tactics", "Severity", "Kind", "What", "Evidence"):
            table.add_column(column, overflow="fold")
        for entry in incident.timeline:
            evidence = entry.get("evidence", {})
            where = evidence.get("path", "")
            if evidence.get("line"):
                where += f":{evidence['line']}"
            elif evidence.get("record"):
                where += f"#{evidence['record']}"
            table.add_row(
                (entry.get("time") or "")[:19].replace("T", " "),
                ", ".join(TACTIC_NAMES.get(t, t) for t in entry.get("tactics", [])),
                f"[{_STYLE[entry['severity']]}]{entry['severity']}[/]",
                entry["kind"],
                entry["title"],
                where,
            )
        out_console.print(table)

    @group.command("assign")
    @cli_errors
    def assign_command(
        ctx: typer.Context,
        incident_id: Annotated[str, typer.Argument(help="Incident id or unique prefix.")],
        assignee: Annotated[str, typer.Argument(help="Who handles it ('' to unassign).")],
    ) -> None:
        """Assign an incident to someone."""
        session = CliSession.of(ctx)
        with session.store() as store:
            incident = set_incident(store, session.tenant, incident_id, assignee=assignee)
            session.record("incident.update", incident.id, store=store, assignee=assignee)
        err_console.print(f"{incident.id} is assigned to {incident.assignee or 'nobody'}")

    @group.command("status")
    @cli_errors
    def status_command(
        ctx: typer.Context,
        incident_id: Annotated[str, typer.Argument(help="Incident id or unique prefix.")],
        status: Annotated[TriageStatus, typer.Argument(help="New status.")],
    ) -> None:
        """Set an incident's status (a resolved incident reopens when new findings join it)."""
        session = CliSession.of(ctx)
        with session.store() as store:
            incident = set_incident(store, session.tenant, incident_id, status=status)
            session.record("incident.update", incident.id, store=store, status=status.value)
        err_console.print(f"{incident.id} is now {incident.status.value}")

    @group.command("correlate")
    @cli_errors
    def correlate_command(
        ctx: typer.Context,
        window: Annotated[
            float, typer.Option(help="Time window in hours within which findings link.")
        ] = 24.0,
        rebuild: Annotated[
            bool,
            typer.Option(help="Start over (e.g. after importing ATT&CK); status and assignee are kept."),
        ] = False,
        json: JsonOpt = False,
    ) -> None:
        """Fold the stored detection, malware and intel findings into incidents (idempotent)."""
        session = CliSession.of(ctx)
        if window <= 0:
            raise InputError("--window must be a positive number of hours")
        tenant = session.tenant
        with session.store() as store:
            kinds = (FindingKind.DETECTION, FindingKind.MALWARE, FindingKind.INTEL)
            findings = [r.finding for r in list_findings(store, tenant, kinds=kinds)]
            span, resolver = timedelta(hours=window), store_technique_resolver(store)
            if rebuild:
                before = {i.id for i in load_incidents(store, tenant)}
                rebuilt = {
                    i.id for i in rebuild_incidents(store, tenant, findings, window=span, resolver=resolver)
                }
                created, updated = rebuilt - before, rebuilt & before
            else:
                changes = update_incidents(store, tenant, findings, window=span, resolver=resolver)
                created = {c.incident.id for c in changes if c.created}
                updated = {c.incident.id for c in changes} - created
            if created or updated:  # a correlation that changed no incident changed nothing
                session.record(
                    "incident.correlate",
                    tenant,
                    store=store,
                    rebuild=rebuild,
                    window_hours=window,
                    created=sorted(created),
                    updated=sorted(updated),
                )
        if json:
            _dump({"created": sorted(created), "updated": sorted(updated)})
            return
        err_console.print(
            f"{len(findings)} finding(s): {len(created)} new incident(s), {len(updated)} updated"
        )


def _trace(app: typer.Typer) -> None:
    @app.command("trace")
    @cli_errors
    def trace_command(
        ctx: typer.Context,
        entity: Annotated[
            str, typer.Argument(help="An IP address, user name, file hash (MD5/SHA-1/SHA-256) or host name.")
        ],
        entity_type: Annotated[
            list[str] | None, typer.Option("--type", help="Force the entity type: ip, user, hash or host.")
        ] = None,
        logs: Annotated[
            list[Path] | None, typer.Option("--logs", help="Log files or folders to search for events too.")
        ] = None,
        json: JsonOpt = False,
    ) -> None:
        """Everything connected to ENTITY — findings, incidents, assets, log events — oldest first."""
        session = CliSession.of(ctx)
        events: list[Any] = []
        if logs:
            with progress_reporter("Reading logs") as advance:
                for path in logs:
                    for event in iter_events(path):
                        events.append(event)
                        advance(str(event.origin.path))
        with session.store() as store:
            story = trace(store, session.tenant, entity, types=entity_type, events=events)
        if json:
            _dump(story.as_dict())
            return
        out_console.rule(f"[bold]Trace[/] {story.value} ({' or '.join(story.types)})")
        if not story.items:
            out_console.print("Nothing is known about it.")
            return
        table = Table(header_style="bold")
        for column in ("Time (UTC)", "What", "Severity", "Title", "Where / ref"):
            table.add_column(column, overflow="fold")
        for item in story.items:
            table.add_row(
                item.time.strftime("%Y-%m-%d %H:%M:%S") if item.time else "",
                item.source,
                f"[{_STYLE[item.severity]}]{item.severity}[/]" if item.severity else "",
                item.title,
                item.where or (item.ref or ""),
            )
        out_console.print(table)
        out_console.print(", ".join(f"{n} {k}(s)" for k, n in story.counts().items()))


def _evidence(app: typer.Typer) -> None:
    group = typer.Typer(help="Signed evidence bundles of incidents.", no_args_is_help=True)
    app.add_typer(group, name="evidence")

    @group.command("export")
    @cli_errors
    def export_command(
        ctx: typer.Context,
        incident_id: Annotated[str, typer.Argument(help="Incident id (INC-…) or a unique prefix.")],
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Zip file to write.")] = None,
        root: Annotated[
            list[Path] | None, typer.Option("--root", help="Folder relative evidence paths are found under.")
        ] = None,
    ) -> None:
        """Write a zip of the incident's raw records and samples, with an SM3 manifest and its signature."""
        session = CliSession.of(ctx)
        config = session.settings
        with session.store() as store:
            incident = find_incident(store, config.tenant, incident_id)
            findings = [r.finding for r in list_findings(store, config.tenant)]
        target = output or Path(f"{incident.id}.zip")
        signer = load_signer(config.home)
        # The bundle records how far the audit chain had gone (read from the signed tip file).
        manifest = export_bundle(
            incident,
            findings,
            target,
            signer,
            roots=root or [],
            quarantine=quarantine_lookup(config.home),
            audit_tip=partial(exported_tip, config.home),
        )
        # Evidence leaving the platform is part of its chain of custody: who exported what, where.
        session.record(
            "evidence.export",
            incident.id,
            output=str(target.resolve()),
            files=len(manifest["files"]),
            missing=len(manifest["missing"]),
        )
        err_console.print(
            f"{target}: {len(manifest['files'])} file(s), signed with {signer.algorithm}, "
            + _tip_text(manifest["audit_tip"])
            + (
                f"; {len(manifest['missing'])} record(s) could not be collected"
                if manifest["missing"]
                else ""
            )
        )
        for item in manifest["missing"]:
            err_console.print(f"[yellow]missing:[/] {item['reason']}", markup=True, highlight=False)
        # The private key stays sealed here; investigators pin the public one.
        public = public_key_path(config.home, signer.algorithm)
        err_console.print(f"verify with: tianmu evidence verify {target} --key {public}", highlight=False)

    @group.command("verify")
    @cli_errors
    def verify_command(
        bundle: Annotated[Path, typer.Argument(help="The bundle (zip) to check.")],
        key: Annotated[
            Path | None, typer.Option(help="The signer's public key (PEM) to require; strongly advised.")
        ] = None,
        json: JsonOpt = False,
    ) -> None:
        """Check a bundle: signature, every SM3 digest, nothing added or removed, every byte as written."""
        trusted = None
        if key is not None:
            try:
                trusted = key.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read the key: {exc.strerror}", str(key)) from exc
        report = verify_bundle(bundle, trusted_key=trusted)
        if json:
            _dump(report.as_dict())
        elif report.ok:
            out_console.print(
                f"[bold green]verified[/] {bundle}: incident {report.incident}, {report.files} file(s), "
                f"{report.algorithm} key {report.key_id}, {_tip_text(report.audit_tip)}"
                + ("" if trusted else " (key not pinned: pass --key to check who signed)"),
                highlight=False,
            )
        else:
            out_console.print(f"[bold red]NOT verified[/] {bundle} ({_tip_text(report.audit_tip)})")
            for problem in report.problems:
                out_console.print(f"  - {problem}", highlight=False)
        raise typer.Exit(ExitCode.OK if report.ok else ExitCode.FINDINGS)


def _tip_text(tip: dict[str, Any] | None) -> str:
    """How far the audit chain had gone when a bundle was made, as its manifest says."""
    if tip is None:
        return "no audit tip recorded"
    return f"audit chain at entry {tip['seq']} ({tip['hash'][:16]})"


def _risk(app: typer.Typer) -> None:
    @app.command("risk")
    @cli_errors
    def risk_command(
        ctx: typer.Context,
        insurance: Annotated[
            bool, typer.Option(help="Add the expected-exposure summary by loss category.")
        ] = False,
        currency: Annotated[str, typer.Option(help="Currency label of the asset values.")] = "USD",
        top: Annotated[int, typer.Option(help="Findings to show per asset.")] = 3,
        json: JsonOpt = False,
    ) -> None:
        """The tenant's risk score (0–100), per asset, with the factors behind it, and the posture trend."""
        session = CliSession.of(ctx)
        tenant = session.tenant
        with session.store() as store:
            assets = load_assets(store, tenant)
            findings = open_findings(store, tenant)
            report = score_findings(findings, assets, tenant=tenant)
            report.history = [p.as_dict() for p in posture_history(store, tenant)]
            summary = insurance_summary(
                findings, assets, currency=currency, resolver=store_technique_resolver(store)
            )
        if json:
            data = report.as_dict()
            if insurance:
                data["insurance"] = summary.as_dict()
            _dump(data)
            return
        style = _LEVEL_STYLE.get(report.level, "green")
        out_console.rule(f"[bold]Risk[/] — tenant {tenant}")
        out_console.print(
            f"Score [{style}]{report.score:.1f}/100 ({report.level})[/] "
            f"over {len(report.findings)} open finding(s)"
        )
        if report.drivers:
            out_console.print(
                "Raised by: " + ", ".join(f"{k} ×{n}" for k, n in sorted(report.drivers.items()))
            )
        table = Table(header_style="bold", title="Assets")
        for column in ("Asset", "Criticality", "Score", "Level", "Findings", "Weighs most (score: factors)"):
            table.add_column(column, overflow="fold")
        for asset in report.assets:
            why = "\n".join(
                f"{f.rule_id} {f.score:.1f}: "
                + ", ".join(f"{x.name} {x.value} ×{x.effect:g}" for x in f.factors)
                for f in asset.top[:top]
            )
            table.add_row(
                asset.name,
                str(asset.criticality),
                f"{asset.score:.1f}",
                asset.level,
                str(asset.findings),
                why,
            )
        out_console.print(table)
        if len(report.history) > 1:
            trend = " → ".join(f"{p['score']:.0f}" for p in report.history[-10:])
            out_console.print(f"Posture trend (last {min(10, len(report.history))} assessments): {trend}")
        if insurance:
            table = Table(
                header_style="bold", title=f"Expected exposure, next 12 months ({summary.currency})"
            )
            for column in ("Category", "Likelihood", "Expected loss", "Assets", "Main driver"):
                table.add_column(column, overflow="fold")
            for c in summary.categories:
                driver = c.drivers[0] if c.drivers else None
                table.add_row(
                    c.category,
                    f"{c.likelihood:.0%}",
                    f"{c.expected:,.0f}",
                    str(c.assets),
                    f"{driver['id']} on {driver['asset']}" if driver else "",
                )
            out_console.print(table)
            out_console.print(f"Total expected exposure: {summary.total_expected:,.0f} {summary.currency}")


def register(app: typer.Typer) -> None:
    _incidents(app)
    _trace(app)
    _evidence(app)
    register_alerts(app)
    _risk(app)
