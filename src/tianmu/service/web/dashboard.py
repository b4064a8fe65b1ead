"""The situation dashboard: server-rendered pages over the same library calls as the REST API.

Every page reads with the signed-in user's tenant and permissions (`require`, as the API does); it
works without JavaScript (numbers, tables, forms, links), and uses Chart.js only to draw the risk
trend and htmx only to spare full reloads. Forms that change data (triage) carry a CSRF token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from tianmu.core.errors import InputError
from tianmu.core.models import FindingKind, Severity, TriageStatus
from tianmu.identity.models import Permission, Principal
from tianmu.identity.permissions import can
from tianmu.jobs import list_jobs
from tianmu.road.knowledge import kb_status
from tianmu.service.api.audit import AuditDep
from tianmu.service.api.context import StoreDep
from tianmu.service.api.deps import csrf_token_for, require, verify_csrf
from tianmu.service.api.resources import finding_public
from tianmu.service.api.routes.findings import FindingFilters, triage_target
from tianmu.service.api.routes.overview import overview_numbers
from tianmu.service.web.i18n import COOKIE, LANGUAGES, choose_language, gettext_for, translations
from tianmu.service.web.unscored import is_unscored_item, open_unscored_by_severity
from tianmu.situation.repository import find_incident, load_incidents, posture_history
from tianmu.situation.trace import trace
from tianmu.store.queries import (
    FindingQuery,
    bulk_set_status,
    find_findings,
    get_asset,
    get_finding,
    list_assets,
    list_components,
)
from tianmu.store.repository import list_assessments
from tianmu.store.schema import services as services_table

__all__ = ["is_web_link", "router", "templates"]

TEMPLATES = Path(__file__).parent / "templates"
templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(),
        extensions=["jinja2.ext.i18n"],
    )
)


def is_web_link(value: object) -> bool:
    """True for an absolute http(s) address with a host: the only references shown as links.

    References come from imported data (an OSV advisory, a YARA rule's `meta.reference`, a STIX
    object) that anyone can write; `javascript:`, `data:` or `vbscript:` there would run in the
    analyst's session when clicked. Anything else is shown as text.
    """
    if not isinstance(value, str) or any(ch in value for ch in "\x00\t\r\n"):
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


templates.env.tests["web_link"] = is_web_link
# Wherever a severity is shown, an advisory that published none reads as unscored (`web/unscored.py`).
templates.env.tests["unscored"] = is_unscored_item
router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require(Permission.SITUATION_READ))]
FindingsReader = Annotated[Principal, Depends(require(Permission.FINDINGS_READ))]
Triager = Annotated[Principal, Depends(require(Permission.FINDINGS_TRIAGE))]


def _language(request: Request) -> str:
    return choose_language(
        request.query_params.get("lang"), request.cookies.get(COOKIE), request.headers.get("accept-language")
    )


def _gettext(request: Request) -> Any:
    return gettext_for(_language(request))


def _render(request: Request, principal: Principal, name: str, section: str, **context: Any) -> HTMLResponse:
    language = _language(request)
    gettext = translations(language)
    response: HTMLResponse = templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "section": section,
            "language": language,
            "languages": LANGUAGES,
            "_": gettext_for(language),
            "gettext": gettext_for(language),
            "ngettext": gettext.ngettext,
            "csrf_token": csrf_token(request),
            "flash": request.query_params.get("done"),
            **context,
        },
    )
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(COOKIE, language, max_age=365 * 86400, samesite="lax", httponly=True)
    return response


def csrf_token(request: Request) -> str:
    return csrf_token_for(request)


def _check_csrf(request: Request, token: str) -> None:
    verify_csrf(request, token)


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, store: StoreDep, principal: Reader) -> HTMLResponse:
    posture = posture_history(store, principal.tenant, limit=30)
    numbers = overview_numbers(store, principal.tenant)
    return _render(
        request,
        principal,
        "dashboard/overview.html",
        "overview",
        numbers=numbers,
        unscored={sev: n for sev, n in numbers["unscored"].items() if n},
        posture=posture,
        posture_json=json.dumps([p.as_dict() for p in posture]).replace("</", "<\\/"),
    )


def _query_string(params: Iterable[tuple[str, Any]]) -> str:
    # Pairs, not a dict: a filter may repeat (severity=high&severity=critical) and every value counts.
    pairs = [(k, v) for k, v in params if k not in ("cursor", "lang", "done") and v not in ("", None)]
    return urlencode(pairs)


@router.get("/findings", response_class=HTMLResponse)
def findings_page(
    request: Request,
    store: StoreDep,
    principal: FindingsReader,
    filters: Annotated[FindingFilters, Depends()],
    cursor: str | None = None,
) -> HTMLResponse:
    try:
        page = find_findings(store, principal.tenant, filters.query, limit=50, cursor=cursor)
    except InputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    q = filters.query
    params = request.query_params.multi_items()
    query_string = _query_string(params)
    return _render(
        request,
        principal,
        "dashboard/findings.html",
        "findings",
        page=SimpleNamespace(items=[finding_public(i) for i in page.items], next_cursor=page.next_cursor),
        kinds=[k.value for k in FindingKind],
        severities=[s.value for s in Severity],
        statuses=[s.value for s in TriageStatus],
        selected={
            "kind": [k.value for k in q.kinds],
            "severity": [s.value for s in q.severities],
            "status": [s.value for s in q.statuses],
            "q": q.text,
            "sort": q.sort.value,
            "asset_id": q.asset_id,
            "kev": q.kev,
            "unscored": q.unscored is True,
        },
        query_string=query_string,
        export_query=query_string,
        back="/findings?" + query_string,
        can_triage=can(principal, Permission.FINDINGS_TRIAGE),
    )


@router.post("/findings/triage")
def triage_form(
    request: Request,
    store: StoreDep,
    principal: Triager,
    audit: AuditDep,
    status: Annotated[TriageStatus, Form()],
    csrf_token: Annotated[str, Form()],
    ids: Annotated[list[int], Form()] = [],  # noqa: B006 - FastAPI copies form defaults
    back: Annotated[str, Form()] = "/findings",
) -> Response:
    _check_csrf(request, csrf_token)
    changed = bulk_set_status(store, principal.tenant, ids, status)
    audit.record(
        "finding.triage", triage_target(ids), status=status.value, ids=sorted(set(ids)), changed=changed
    )
    # Only paths of this site: an open redirect would let a link send a user anywhere after triage
    # (browsers read "/\\host" as "//host").
    target = back if back.startswith("/") and not back.startswith(("//", "/\\")) else "/findings"
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}{urlencode({'done': f'{changed} → {status.value}'})}", 303)


@router.get("/findings/{finding_id}", response_class=HTMLResponse)
def finding_page(
    request: Request, finding_id: int, store: StoreDep, principal: FindingsReader
) -> HTMLResponse:
    found = get_finding(store, principal.tenant, finding_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no finding {finding_id}")
    item = finding_public(found)
    return _render(
        request,
        principal,
        "dashboard/finding.html",
        "findings",
        item=item,
        statuses=[s.value for s in TriageStatus],
        can_triage=can(principal, Permission.FINDINGS_TRIAGE),
        evidence_json=json.dumps(item.detail.get("evidence", {}), indent=2, ensure_ascii=False),
    )


@router.get("/assets", response_class=HTMLResponse)
def assets_page(request: Request, store: StoreDep, principal: Reader) -> HTMLResponse:
    return _render(
        request,
        principal,
        "dashboard/assets.html",
        "assets",
        assets=list_assets(store, principal.tenant, limit=500),
    )


@router.get("/assets/{asset_id}", response_class=HTMLResponse)
def asset_page(request: Request, asset_id: int, store: StoreDep, principal: Reader) -> HTMLResponse:
    summary = get_asset(store, principal.tenant, asset_id)
    if summary is None:
        raise HTTPException(status_code=404, detail=f"no asset {asset_id}")
    found = find_findings(store, principal.tenant, FindingQuery(asset_id=asset_id), limit=200).items
    return _render(
        request,
        principal,
        "dashboard/asset.html",
        "assets",
        summary=summary,
        findings=[finding_public(i) for i in found],
        components=list_components(store, principal.tenant, asset_id=asset_id, limit=5000),
        unscored=open_unscored_by_severity(store, principal.tenant, asset_id),
        services=_services(store, principal.tenant, asset_id),
        latest=next(iter(list_assessments(store, principal.tenant, asset_id=asset_id, limit=1)), None),
    )


def _services(store: StoreDep, tenant: str, asset_id: int) -> list[Any]:
    """Open network services discovered on the asset."""
    query = (
        select(services_table)
        .where(
            services_table.c.tenant == tenant,
            services_table.c.asset_id == asset_id,
            services_table.c.state == "open",
        )
        .order_by(services_table.c.port)
    )
    with store.connect() as conn:
        return list(conn.execute(query.limit(1000)))


@router.get("/detections", response_class=HTMLResponse)
def detections_page(request: Request, store: StoreDep, principal: FindingsReader) -> HTMLResponse:
    page = find_findings(
        store, principal.tenant, FindingQuery(kinds=(FindingKind.DETECTION, FindingKind.INTEL)), limit=500
    )
    items = [finding_public(i) for i in page.items]
    items.sort(key=lambda i: str((i.detail.get("evidence") or {}).get("time") or ""), reverse=True)
    return _render(request, principal, "dashboard/detections.html", "detections", items=items)


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, store: StoreDep, principal: Reader) -> HTMLResponse:
    return _render(
        request,
        principal,
        "dashboard/incidents.html",
        "incidents",
        incidents=load_incidents(store, principal.tenant, limit=500),
    )


@router.get("/incidents/{key}", response_class=HTMLResponse)
def incident_page(request: Request, key: str, store: StoreDep, principal: Reader) -> HTMLResponse:
    try:
        incident = find_incident(store, principal.tenant, key)
    except InputError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return _render(request, principal, "dashboard/incident.html", "incidents", incident=incident)


@router.get("/trace", response_class=HTMLResponse)
def trace_page(
    request: Request, store: StoreDep, principal: FindingsReader, value: str | None = None
) -> HTMLResponse:
    story = None
    if value and value.strip():
        try:
            story = trace(store, principal.tenant, value)
        except InputError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
    return _render(request, principal, "dashboard/trace.html", "trace", story=story, value=value)


@router.get("/intel", response_class=HTMLResponse)
def intel_page(request: Request, store: StoreDep, principal: FindingsReader) -> HTMLResponse:
    _ = _gettext(request)
    hits = find_findings(store, principal.tenant, FindingQuery(kinds=(FindingKind.INTEL,)), limit=500).items
    sources = [
        s
        for s in kb_status(store)
        if s.kind in ("intel", "stix", "misp", "attack") or s.name.startswith("intel")
    ]
    rows: list[list[Any]] = [
        [
            f.finding.severity.value,
            {"href": f"/findings/{f.id}", "text": f.finding.rule_id},
            f.finding.title,
            ", ".join(sorted(f.finding.data.get("sources") or []))
            if isinstance(f.finding.data.get("sources"), list)
            else "",
            f.finding.last_seen.strftime("%Y-%m-%d %H:%M") if f.finding.last_seen else "",
        ]
        for f in hits
    ]
    intro = (
        _("Intelligence sources") + ": " + (", ".join(f"{s.name} ({s.record_count})" for s in sources) or "—")
    )
    return _render(
        request,
        principal,
        "dashboard/simple_table.html",
        "intel",
        heading=_("Threat-intelligence hits"),
        intro=intro,
        testid="intel",
        columns=[_("Severity"), _("Indicator"), _("Title"), _("Sources"), _("Last seen")],
        rows=rows,
        empty=_("No intelligence hits."),
    )


@router.get("/kb", response_class=HTMLResponse)
def kb_page(request: Request, store: StoreDep, principal: Reader) -> HTMLResponse:
    _ = _gettext(request)
    rows = [
        [
            s.name,
            s.kind,
            s.record_count,
            s.version or "",
            s.imported_at.strftime("%Y-%m-%d %H:%M UTC"),
            s.digest[:16],
        ]
        for s in kb_status(store)
    ]
    return _render(
        request,
        principal,
        "dashboard/simple_table.html",
        "kb",
        heading=_("Knowledge bases"),
        intro=_("Which data every verdict rests on: source, records, version and import date."),
        testid="kb",
        columns=[_("Source"), _("Kind"), _("Records"), _("Version"), _("Imported"), _("Digest")],
        rows=rows,
        empty=_("No knowledge base imported yet."),
    )


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, store: StoreDep, principal: Reader) -> HTMLResponse:
    _ = _gettext(request)
    rows = [
        [
            j.id[:8],
            j.kind,
            _(j.status.value),
            j.attempts,
            j.created.strftime("%Y-%m-%d %H:%M:%S"),
            j.error or j.progress,
        ]
        for j in list_jobs(store, principal.tenant, limit=200)
    ]
    return _render(
        request,
        principal,
        "dashboard/simple_table.html",
        "jobs",
        heading=_("Jobs"),
        intro=None,
        testid="jobs",
        columns=[_("Job"), _("Kind"), _("Status"), _("Attempts"), _("Created"), _("Progress / error")],
        rows=rows,
        empty=_("No jobs."),
    )
