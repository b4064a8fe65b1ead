"""`tianmu worker` and `tianmu jobs`: run work on Celery workers, submit it, follow it, cancel it."""

from __future__ import annotations

import json as jsonlib
import time
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from tianmu.cli.console import ExitCode, err_console, out_console
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.config import Settings
from tianmu.core.errors import InputError
from tianmu.jobs import JOB_KINDS, InProcessRunner, JobStatus, cancel, get_job, list_jobs, submit_job
from tianmu.jobs.isolation import ProcessLimits, can_isolate
from tianmu.jobs.models import Job
from tianmu.store.database import Store

__all__ = ["register"]


class RunnerChoice(StrEnum):
    CELERY = "celery"
    LOCAL = "local"


class Pool(StrEnum):
    PREFORK = "prefork"
    SOLO = "solo"
    THREADS = "threads"


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param expects KEY=VALUE, got {pair!r}")
        params[key.strip()] = value
    return params


def _status(job: Job) -> str:
    """The state as users should read it: a `done` that read only part of its input says so."""
    if job.partial and job.status is JobStatus.DONE:
        return f"{job.status.value} (partial: {job.error_count} error(s))"
    return job.status.value


def _print_job(job: Job, as_json: bool) -> None:
    if as_json:
        out_console.file.write(jsonlib.dumps(job.as_dict(), indent=2) + "\n")
        return
    out_console.print(f"[bold]{job.id}[/] {job.kind} — {_status(job)}", highlight=False)
    # The errors are listed on their own below; the result line keeps the counts readable.
    shown = {k: v for k, v in (job.result or {}).items() if k != "errors"}
    for label, value in (
        ("params", jsonlib.dumps(job.params)),
        ("attempts", str(job.attempts)),
        ("worker", job.worker or ""),
        ("progress", job.progress),
        ("result", jsonlib.dumps(shown) if job.result is not None else ""),
        ("error", job.error or ""),
    ):
        if value:
            # markup=False: paths and errors are the user's (or an attacker's) text, `[` included.
            out_console.print(f"  {label}: {value}", highlight=False, markup=False)
    errors = job.first_errors
    if errors:
        out_console.print(f"  errors ({job.error_count}):", highlight=False)
        for error in errors:
            out_console.print(f"    {error}", highlight=False, markup=False)
        if job.error_count > len(errors):
            out_console.print(f"    … and {job.error_count - len(errors)} more", highlight=False)


def _isolation_note(config: Settings) -> str:
    """How this worker runs its jobs, said once at start (a limit nobody knows of looks like a bug)."""
    if not can_isolate(config):
        return "jobs run in the worker's own processes, without limits (TIANMU_JOB_ISOLATION is off)"
    limits = ProcessLimits.of(config)
    memory = f"{limits.memory_mb} MiB" if limits.memory_mb else "unbounded"
    time_limit = f"{limits.timeout_seconds:g} s" if limits.timeout_seconds else "unbounded"
    return (
        f"each job runs in a child process: memory {memory} (TIANMU_JOB_MEMORY_MB), "
        f"time {time_limit} (TIANMU_JOB_TIMEOUT_SECONDS)"
    )


def _record_submit(
    session: CliSession, store: Store, job: Job, created: bool, params: dict[str, Any]
) -> None:
    # Right after the submission, before any wait: as the service does, a repeated idempotent
    # submission changes nothing and is not recorded.
    if created:
        session.record("job.submit", job.id, store=store, kind=job.kind, params=params)


def register(app: typer.Typer) -> None:
    @app.command("worker")
    @cli_errors
    def worker_command(
        ctx: typer.Context,
        concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once (default: CPU count).")] = 0,
        pool: Annotated[Pool, typer.Option(help="Celery pool: processes, one in-line, or threads.")] = (
            Pool.PREFORK
        ),
        beat: Annotated[bool, typer.Option(help="Also run the scheduler for periodic jobs.")] = False,
        reap_interval: Annotated[
            float, typer.Option(help="Seconds between checks for jobs whose worker died.")
        ] = 10.0,
        loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    ) -> None:
        """Run jobs sent through the broker (TIANMU_BROKER_URL) against the shared database."""
        # Celery: heavy, optional for every command of this module but worker and submit.
        from tianmu.jobs.celery_app import create_celery, start_housekeeping

        session = CliSession.of(ctx)
        config = session.settings
        with session.store():
            pass  # migrate (and fail clearly) before the worker starts taking messages
        app_ = create_celery(config)
        err_console.print(_isolation_note(config), highlight=False)
        stop = start_housekeeping(app_, config, reap_interval)
        argv = ["worker", f"--pool={pool.value}", f"--loglevel={loglevel}", "--without-gossip"]
        argv += ["--without-mingle", "--without-heartbeat"]
        if concurrency:
            argv.append(f"--concurrency={concurrency}")
        if beat:
            config.home.mkdir(parents=True, exist_ok=True)
            argv += ["--beat", f"--schedule={config.home / 'celerybeat-schedule'}"]
        try:
            app_.worker_main(argv=argv)
        finally:
            stop.set()

    group = typer.Typer(help="Jobs: submit work to the runners, follow it, cancel it.", no_args_is_help=True)
    app.add_typer(group, name="jobs")

    @group.command("kinds")
    def kinds_command() -> None:
        """The kinds of job there are."""
        for kind in JOB_KINDS.values():
            out_console.print(f"[bold]{kind.name}[/]  {kind.description}", highlight=False)

    @group.command("submit")
    @cli_errors
    def submit_command(
        ctx: typer.Context,
        kind: Annotated[str, typer.Argument(help="Job kind (see `tianmu jobs kinds`).")],
        param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE")] = None,
        key: Annotated[str | None, typer.Option(help="Idempotency key: the same key is one job.")] = None,
        runner: Annotated[
            RunnerChoice, typer.Option(help="celery: send to `tianmu worker`s; local: run it here, now.")
        ] = RunnerChoice.CELERY,
        wait: Annotated[bool, typer.Option(help="Wait until the job has ended.")] = False,
        timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds.")] = 3600,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    ) -> None:
        """Queue a job; with --wait, follow it to its end (exit 1 if it failed)."""
        session = CliSession.of(ctx)
        config = session.settings
        params = _parse_params(param or [])
        with session.store() as store:
            if runner is RunnerChoice.LOCAL:
                local = InProcessRunner(store, config, workers=1)
                job, _created = submit_job(
                    store,
                    local,
                    kind,
                    params,
                    tenant=config.tenant,
                    idempotency_key=key,
                    submitted_by=session.actor,
                )
                _record_submit(session, store, job, _created, params)
                if job.id in local.futures:
                    local.wait(job.id)
                local.shutdown()
            else:
                # Celery: heavy, optional (not needed with --runner local).
                from tianmu.jobs.celery_app import CeleryRunner, create_celery

                celery = CeleryRunner(create_celery(config))
                job, _created = submit_job(
                    store,
                    celery,
                    kind,
                    params,
                    tenant=config.tenant,
                    idempotency_key=key,
                    submitted_by=session.actor,
                )
                _record_submit(session, store, job, _created, params)
                if wait:
                    deadline = time.monotonic() + timeout
                    while not JobStatus(job.status).finished and time.monotonic() < deadline:
                        time.sleep(0.5)
                        job = get_job(store, job.id) or job
            final = get_job(store, job.id) or job
        _print_job(final, json)
        if final.status is JobStatus.FAILED:
            raise typer.Exit(ExitCode.FINDINGS)
        if (wait or runner is RunnerChoice.LOCAL) and not final.status.finished:
            err_console.print(f"[yellow]job {final.id} has not ended yet ({final.status.value})[/]")
            raise typer.Exit(ExitCode.FINDINGS)

    @group.command("list")
    @cli_errors
    def list_command(
        ctx: typer.Context,
        status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this state.")] = None,
        kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    ) -> None:
        """The tenant's jobs, newest first."""
        session = CliSession.of(ctx)
        with session.store() as store:
            rows = list_jobs(store, session.tenant, status=status, kind=kind, limit=limit)
        if json:
            out_console.file.write(jsonlib.dumps([j.as_dict() for j in rows], indent=2) + "\n")
            return
        table = Table(header_style="bold")
        for column in ("Id", "Kind", "Status", "Attempts", "Created", "Progress / error"):
            table.add_column(column, overflow="fold")
        for job in rows:
            first = job.first_errors[0] if job.first_errors else ""
            table.add_row(
                job.id,
                job.kind,
                _status(job),
                str(job.attempts),
                job.created.strftime("%Y-%m-%d %H:%M:%S"),
                Text(job.error or first or job.progress),  # Text: no markup in what files say
            )
        out_console.print(table)

    @group.command("show")
    @cli_errors
    def show_command(
        ctx: typer.Context,
        job_id: str,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    ) -> None:
        """One job: parameters, state, progress, result or error."""
        session = CliSession.of(ctx)
        with session.store() as store:
            job = get_job(store, job_id, session.tenant)
        if job is None:
            raise InputError(f"no job {job_id}")
        _print_job(job, json)

    @group.command("cancel")
    @cli_errors
    def cancel_command(ctx: typer.Context, job_id: str) -> None:
        """Cancel a queued job, or ask a running one to stop at its next step."""
        session = CliSession.of(ctx)
        with session.store() as store:
            job = cancel(store, job_id, session.tenant)
            session.record("job.cancel", job.id, store=store, kind=job.kind, status=job.status.value)
        out_console.print(
            f"{job.id}: {'cancelled' if job.status is JobStatus.CANCELLED else 'cancellation requested'}"
        )
