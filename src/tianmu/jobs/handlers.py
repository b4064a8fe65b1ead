"""The kinds of job Tianmu runs, each a thin call into the library (the same calls the CLI makes).

`JOB_KINDS` maps a kind to its `JobKind`: a parameter check run at submission (so a bad request is
refused before it is queued) and the handler run by a worker. A handler gets a `JobContext`: the
store, the settings, the job, the loaded malware rule sets of the process that runs it (`rules`),
`progress()` (which also raises JobCancelled when a cancel was asked), and `complete_in(conn)`, which
marks the job done inside a transaction of the handler's own so that its effects and the `done` mark
commit together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from tianmu.assets.network.engine import DiscoverOptions
from tianmu.core.config import Settings
from tianmu.core.errors import InputError, TianmuError
from tianmu.core.models import AssetKind
from tianmu.jobs import queue
from tianmu.jobs.models import Job, JobCancelled
from tianmu.malware.rulecache import RuleCache
from tianmu.road.assess import ENGINES, AssessOptions, UnreadableTarget, assess
from tianmu.road.engines import JobLimits
from tianmu.road.knowledge import import_any, update_sources
from tianmu.road.network import run_discover, run_domain, run_web
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportReport, KbContext
from tianmu.store.repository import SaveResult
from tianmu.store.schema import assessments, assets
from tianmu.websec.domain import DomainOptions
from tianmu.websec.engine import WebOptions

__all__ = [
    "FIRST_ERRORS",
    "JOB_KINDS",
    "PROGRESS_INTERVAL",
    "Handler",
    "JobContext",
    "JobFailed",
    "JobKind",
    "honest",
    "validate_params",
]

PROGRESS_INTERVAL = 0.5
"""Seconds between two progress writes of one job."""


@dataclass(slots=True)
class JobContext:
    store: Store
    settings: Settings
    job: Job
    lease: timedelta
    dispatch: Callable[[str], None]
    """Hands a newly queued job id to the runner that runs this one (in-process pool or Celery)."""
    rules: RuleCache
    """The runner's loaded malware rule sets: one cache for every job the process runs, so the
    second assessment does not deserialise the rule sets again (0.4-0.7 s per partition)."""
    completed: bool = False
    """True once the handler marked the job done in its own transaction (`complete_in`)."""
    result: dict[str, Any] = field(default_factory=dict)
    _last_report: float = 0.0

    def progress(self, message: str) -> None:
        """Record progress and renew the lease; raises JobCancelled when a cancel was requested.

        Engines call this per file or per port, thousands of times a second: the database hears about
        it at most every PROGRESS_INTERVAL seconds.
        """
        now = time.monotonic()
        if now - self._last_report < PROGRESS_INTERVAL:
            return
        self._last_report = now
        if queue.renew(self.store, self.job, self.lease, message):
            raise JobCancelled(self.job.id)

    def complete_in(self, conn: Connection, result: dict[str, Any]) -> None:
        queue.complete(conn, self.job, result)
        self.completed = True
        self.result = result


class JobFailed(TianmuError):
    """A handler's end as `failed` with what it read: the reason, and the result to keep on the job."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


Handler = Callable[[JobContext], dict[str, Any]]
Validator = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    description: str
    validate: Validator
    run: Handler


def _require_path(params: dict[str, Any]) -> dict[str, Any]:
    path = params.get("path")
    if not isinstance(path, str) or not path.strip():
        raise InputError("parameter `path` is required: the file or folder to work on, as the worker sees it")
    return {"path": path}


def _assess_params(params: dict[str, Any]) -> dict[str, Any]:
    checked = _require_path({"path": params.get("path")})
    engines = params.get("engines")
    if engines is not None:
        if isinstance(engines, str):
            engines = [e.strip() for e in engines.split(",") if e.strip()]
        unknown = [e for e in engines if e not in ENGINES] if isinstance(engines, list) else [str(engines)]
        if unknown:
            raise InputError(f"unknown engine(s) {', '.join(unknown)} (known: {', '.join(ENGINES)})")
        checked["engines"] = engines
    extra = sorted(set(params) - {"path", "engines"})
    if extra:
        raise InputError(f"unknown parameter(s) for assess: {', '.join(extra)}")
    return checked


def _no_params(params: dict[str, Any]) -> dict[str, Any]:
    if params:
        raise InputError(f"this job takes no parameters, got: {', '.join(sorted(params))}")
    return {}


def _sources(params: dict[str, Any]) -> dict[str, Any]:
    sources = params.get("sources") or []
    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",") if s.strip()]
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise InputError("parameter `sources` must be a list of source names (osv:PyPI, kev, epss...)")
    return {"sources": sources}


FIRST_ERRORS = 10
"""Errors a job's result quotes (the count is of them all; the assessment or report holds every one)."""


def honest(result: dict[str, Any], errors: list[str], *, read_nothing: bool = False) -> dict[str, Any]:
    """`result` with what went wrong in it: `error_count`, the first errors, and `partial`.

    A job whose handler read something but not everything is `done` and `partial`: the user sees on
    the job, not only deep in the stored assessment, that its counts are not the whole story. One that
    read nothing (`read_nothing`) is failed, not partial.
    """
    partial = bool(errors) and not read_nothing
    return {**result, "error_count": len(errors), "errors": errors[:FIRST_ERRORS], "partial": partial}


def _run_assess(ctx: JobContext) -> dict[str, Any]:
    path = Path(ctx.job.params["path"])

    def finish(conn: Connection, saved: SaveResult) -> None:
        # The errors as stored with the assessment, read in its own transaction: the job is marked
        # done (and partial) with exactly what was stored, in one commit.
        row = conn.execute(
            select(assessments.c.errors, assessments.c.notes).where(assessments.c.id == saved.assessment_id)
        ).one()
        errors = [str(e) for e in row.errors] if isinstance(row.errors, list) else []
        # What the run left out or capped (pseudo file systems, a refused .tianmuignore, vanished files,
        # limits hit) belongs on the job too, or "done" would read as "everything was looked at".
        notes = [str(n) for n in row.notes][:FIRST_ERRORS] if isinstance(row.notes, list) else []
        summary = {
            "assessment_id": saved.assessment_id,
            "asset_id": saved.asset_id,
            "new_findings": saved.new_findings,
            "seen_again": saved.seen_again,
            "reopened": saved.reopened,
            "components": saved.components,
            "findings": saved.findings,
            "notes": notes,
        }
        ctx.complete_in(conn, honest(summary, errors))

    # A target that gave nothing at all (an SBOM that could not be read) fails the job with the
    # reasons instead of ending `done` with 0 components and the error only in the assessment.
    options = AssessOptions(
        tenant=ctx.job.tenant,
        home=ctx.settings.home,
        save_hook=finish,
        rules=ctx.rules,
        limits=JobLimits.from_settings(ctx.settings),
        refuse_unreadable=True,
    )
    if "engines" in ctx.job.params:
        options = replace(options, engines=tuple(ctx.job.params["engines"]))
    try:
        result = assess(ctx.store, path, options, progress=ctx.progress)
    except UnreadableTarget as exc:
        raise JobFailed(
            f"{exc}: " + "; ".join(exc.errors[:FIRST_ERRORS]) if exc.errors else str(exc),
            honest({"components": 0, "findings": 0}, exc.errors, read_nothing=True),
        ) from exc
    # The job was marked done with this summary inside the transaction that stored the assessment.
    return dict(ctx.result) or honest(
        {"components": len(result.components), "findings": len(result.findings)}, list(result.errors)
    )


def _kb_result(reports: list[ImportReport]) -> dict[str, Any]:
    """The import reports, with their errors counted; failed when no source gave anything usable."""
    errors = [f"{r.source}: {e}" for r in reports for e in r.errors]
    errors += [f"{r.source}: {r.status}" for r in reports if r.status in _UNUSABLE and not r.errors]
    nothing = bool(reports) and all(r.status in _UNUSABLE for r in reports)
    result = honest({"reports": [r.as_dict() for r in reports]}, errors, read_nothing=nothing)
    if nothing:
        raise JobFailed("nothing could be imported: " + "; ".join(errors[:FIRST_ERRORS]), result)
    return result


_UNUSABLE = frozenset({"failed", "skipped"})
"""Report statuses that mean the source gave nothing (`refused` is a decision, reported as partial)."""


def _kb_import_params(params: dict[str, Any]) -> dict[str, Any]:
    checked = _require_path(params)
    replace_ = params.get("replace", False)
    if isinstance(replace_, str) and replace_.strip().lower() in _BOOLEAN_WORDS:
        replace_ = _BOOLEAN_WORDS[replace_.strip().lower()]
    if not isinstance(replace_, bool):
        raise InputError(
            f"parameter `replace` must be true or false (as `kb import --replace`), got {replace_!r}"
        )
    extra = sorted(set(params) - {"path", "replace"})
    if extra:
        raise InputError(f"unknown parameter(s) for kb_import: {', '.join(extra)}")
    return {**checked, "replace": replace_}


_BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _run_kb_import(ctx: JobContext) -> dict[str, Any]:
    kb = KbContext(
        store=ctx.store,
        home=ctx.settings.home,
        progress=ctx.progress,
        # Jobs queued before the parameter existed have none: a merge, as `kb import` without --replace.
        replace=bool(ctx.job.params.get("replace", False)),
    )
    return _kb_result(import_any(kb, Path(ctx.job.params["path"])))


def _run_kb_update(ctx: JobContext) -> dict[str, Any]:
    kb = KbContext(store=ctx.store, home=ctx.settings.home, progress=ctx.progress)
    return _kb_result(update_sources(kb, ctx.job.params.get("sources") or None))


def _run_reassess(ctx: JobContext) -> dict[str, Any]:
    """Queue an assessment of every directory/repository asset of the tenant that still exists."""
    with ctx.store.connect() as conn:
        names = conn.execute(
            select(assets.c.name).where(
                assets.c.tenant == ctx.job.tenant,
                assets.c.kind.in_([AssetKind.DIRECTORY.value, AssetKind.REPOSITORY.value]),
            )
        ).scalars()
        paths = sorted(name for name in names if Path(name).exists())
    queued = []
    for path in paths:
        # One re-assessment per asset per scheduling job, however often this job itself is retried.
        job, created = queue.submit(
            ctx.store,
            "assess",
            {"path": path},
            tenant=ctx.job.tenant,
            idempotency_key=f"reassess:{ctx.job.id}:{path}",
            submitted_by=f"job:{ctx.job.id}",
        )
        queued.append(job.id)
        if created:
            ctx.dispatch(job.id)
    return {"queued": queued}


def _names(params: dict[str, Any], key: str, what: str) -> list[str]:
    value = params.get(key)
    if isinstance(value, str):
        value = [v.strip() for v in value.replace(",", " ").split() if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"parameter `{key}` is required: one or more {what}")
    return list(value)


def _flag(params: dict[str, Any], key: str) -> bool:
    value = params.get(key, False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _discover_params(params: dict[str, Any]) -> dict[str, Any]:
    ports = params.get("ports") or "top"
    if not isinstance(ports, str):
        raise InputError("parameter `ports` is a port spec such as `top`, `22,80,443` or `1-1024`")
    return {
        "targets": _names(params, "targets", "IPs, CIDRs, ranges or host names"),
        "ports": ports,
        "authorized": _flag(params, "authorized"),
    }


def _web_params(params: dict[str, Any]) -> dict[str, Any]:
    return {"urls": _names(params, "urls", "http(s) URLs"), "authorized": _flag(params, "authorized")}


def _domain_params(params: dict[str, Any]) -> dict[str, Any]:
    selectors = params.get("dkim_selectors") or []
    if isinstance(selectors, str):
        selectors = [s.strip() for s in selectors.split(",") if s.strip()]
    return {"domains": _names(params, "domains", "domain names"), "dkim_selectors": list(selectors)}


def _summary(result: Any) -> dict[str, Any]:
    findings = getattr(result, "findings", [])
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.severity.value] = counts.get(finding.severity.value, 0) + 1
    return honest({"findings": len(findings), "by_severity": counts}, list(getattr(result, "errors", [])))


def _run_discover(ctx: JobContext) -> dict[str, Any]:
    p = ctx.job.params
    options = DiscoverOptions(ports=p["ports"], authorized=p["authorized"], tenant=ctx.job.tenant)
    # Discovery reports (stage, count); the job records the stage.
    result = run_discover(
        ctx.store,
        p["targets"],
        options,
        progress=lambda stage, _n: ctx.progress(stage),
        home=ctx.settings.home,
    )
    return {**_summary(result), "hosts": len(result.hosts), "ports_scanned": result.ports_scanned}


def _run_web(ctx: JobContext) -> dict[str, Any]:
    p = ctx.job.params
    options = WebOptions(authorized=p["authorized"], tenant=ctx.job.tenant)
    result = run_web(ctx.store, p["urls"], options, progress=ctx.progress, home=ctx.settings.home)
    return {**_summary(result), "sites": len(result.sites)}


def _run_domain(ctx: JobContext) -> dict[str, Any]:
    p = ctx.job.params
    options = DomainOptions(dkim_selectors=tuple(p["dkim_selectors"]), tenant=ctx.job.tenant)
    result = run_domain(ctx.store, p["domains"], options, progress=ctx.progress, home=ctx.settings.home)
    return {**_summary(result), "domains": len(result.domains)}


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("assess", "Assess a path: inventory and every engine, stored.", _assess_params, _run_assess),
        JobKind(
            "kb_import",
            "Import knowledge-base files or a bundle folder (merged; `replace` makes it authoritative).",
            _kb_import_params,
            _run_kb_import,
        ),
        JobKind(
            "kb_update", "Download and import the official knowledge-base sources.", _sources, _run_kb_update
        ),
        JobKind(
            "reassess", "Queue a re-assessment of every registered path asset.", _no_params, _run_reassess
        ),
        JobKind(
            "discover", "Discover hosts and services of a network range.", _discover_params, _run_discover
        ),
        JobKind("web", "Check websites remotely (TLS, headers, exposures).", _web_params, _run_web),
        JobKind("domain", "Check domain names (SPF, DMARC, DNSSEC, CAA...).", _domain_params, _run_domain),
    )
}


def validate_params(
    kind: str, params: dict[str, Any], kinds: Mapping[str, JobKind] | None = None
) -> dict[str, Any]:
    """The parameters as the handler will read them; InputError names what is wrong.

    `kinds`: the job kinds a runner knows (default `JOB_KINDS`)."""
    known = JOB_KINDS if kinds is None else kinds
    spec = known.get(kind)
    if spec is None:
        raise InputError(f"unknown job kind {kind!r} (known: {', '.join(sorted(known))})")
    return spec.validate(params)
