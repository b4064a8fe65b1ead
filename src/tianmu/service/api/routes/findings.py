"""/api/v1/findings: the tenant's findings — filter, sort, page, read one, triage, bulk triage, export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse

from tianmu.core.errors import InputError
from tianmu.core.models import FindingKind, Severity, TriageStatus
from tianmu.identity.audittip import exported_tip
from tianmu.identity.models import Permission, Principal
from tianmu.service.api.audit import AuditDep
from tianmu.service.api.context import SettingsDep, StoreDep
from tianmu.service.api.deps import CsrfChecked, require
from tianmu.service.api.resources import (
    BulkTriage,
    FindingPage,
    FindingPublic,
    TriageUpdate,
    finding_public,
)
from tianmu.store.database import Store
from tianmu.store.queries import (
    FindingQuery,
    FindingSort,
    PagedFinding,
    bulk_set_status,
    find_findings,
    get_finding,
)

__all__ = ["FindingFilters", "router", "spreadsheet_safe", "triage_target"]

E = TypeVar("E", FindingKind, Severity, TriageStatus)

router = APIRouter(prefix="/findings", tags=["findings"])

Reader = Annotated[Principal, Depends(require(Permission.FINDINGS_READ))]
Triager = Annotated[Principal, Depends(require(Permission.FINDINGS_TRIAGE))]


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


class FindingFilters:
    """The query parameters every findings list understands (the API's and the dashboard's).

    Empty values are ignored rather than refused, because an HTML filter form sends `severity=` for
    "any"; a value that is present but wrong is a 422 naming the parameter and what it accepts.
    """

    def __init__(
        self,
        kind: Annotated[list[str] | None, Query(description="One or more kinds.")] = None,
        severity: Annotated[list[str] | None, Query(description="Exactly these severities.")] = None,
        min_severity: Annotated[str | None, Query(description="At or above this severity.")] = None,
        status: Annotated[list[str] | None, Query(description="Triage statuses.")] = None,
        asset_id: Annotated[str | None, Query(description="One asset's findings.")] = None,
        since: Annotated[datetime | None, Query(description="Last seen at or after (ISO 8601).")] = None,
        until: Annotated[datetime | None, Query(description="Last seen before (ISO 8601).")] = None,
        q: Annotated[str | None, Query(max_length=200, description="Text in the rule id or title.")] = None,
        kev: Annotated[bool | None, Query(description="Only (or never) CISA KEV-listed flaws.")] = None,
        unscored: Annotated[
            bool | None, Query(description="Only (or never) flaws whose advisories publish no severity.")
        ] = None,
        sort: Annotated[FindingSort, Query()] = FindingSort.LAST_SEEN,
    ) -> None:
        minimum = _choices("min_severity", [min_severity] if min_severity else [], Severity)
        self.query = FindingQuery(
            kinds=_choices("kind", kind, FindingKind),
            severities=_choices("severity", severity, Severity),
            min_severity=minimum[0] if minimum else None,
            statuses=_choices("status", status, TriageStatus),
            asset_id=_integer("asset_id", asset_id),
            since=since,
            until=until,
            text=q or None,
            kev=kev,
            unscored=unscored,
            sort=sort,
        )


def _choices(name: str, values: list[str] | None, enum: type[E]) -> tuple[E, ...]:
    chosen = []
    for value in values or []:
        if not value:
            continue
        try:
            chosen.append(enum(value))
        except ValueError:
            allowed = ", ".join(e.value for e in enum)  # type: ignore[attr-defined]
            raise HTTPException(422, f"{name}={value!r} is not one of: {allowed}") from None
    return tuple(chosen)


def _integer(name: str, value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        raise HTTPException(422, f"{name}={value!r} is not a number")
    return int(value)


Filters = Annotated[FindingFilters, Depends()]


@router.get("", response_model=FindingPage, summary="List findings")
def list_findings(
    store: StoreDep,
    principal: Reader,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> FindingPage:
    try:
        page = find_findings(store, principal.tenant, filters.query, limit=limit, cursor=cursor)
    except InputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return FindingPage(items=[finding_public(i) for i in page.items], next_cursor=page.next_cursor)


@router.post("/triage", summary="Triage many findings at once", dependencies=[CsrfChecked])
def bulk_triage(store: StoreDep, principal: Triager, body: BulkTriage, audit: AuditDep) -> dict[str, int]:
    changed = bulk_set_status(store, principal.tenant, body.ids, body.status)
    audit.record(
        "finding.triage",
        triage_target(body.ids),
        status=body.status.value,
        ids=sorted(set(body.ids)),
        changed=changed,
    )
    return {"changed": changed}


def triage_target(ids: list[int]) -> str:
    """The audit entry's target for a triage: the ids (the first 20, and how many there were)."""
    unique = sorted(set(ids))
    return ",".join(map(str, unique[:20])) + (f",… ({len(unique)} findings)" if len(unique) > 20 else "")


@router.get("/export", summary="Export the filtered findings (CSV or JSON)")
def export_findings(
    store: StoreDep,
    settings: SettingsDep,
    principal: Reader,
    filters: Filters,
    format: ExportFormat = ExportFormat.CSV,
) -> StreamingResponse:
    def pages() -> Iterator[FindingPublic]:
        cursor: str | None = None
        while True:
            page = find_findings(store, principal.tenant, filters.query, limit=1000, cursor=cursor)
            yield from (finding_public(i) for i in page.items)
            cursor = page.next_cursor
            if cursor is None:
                return

    # As every alert does, an export carries the audit chain's tip: a copy of its progress kept outside.
    seq, tip = exported_tip(settings.home)
    audit_tip = {"X-Tianmu-Audit-Tip": f"seq={seq}; tip={tip}"}
    if format is ExportFormat.JSON:

        def as_json() -> Iterator[str]:
            yield "["
            for n, item in enumerate(pages()):
                yield ("," if n else "") + json.dumps(
                    {**item.detail, "finding_id": item.id}, ensure_ascii=False
                )
            yield "]\n"

        headers = {"Content-Disposition": 'attachment; filename="tianmu-findings.json"', **audit_tip}
        return StreamingResponse(as_json(), media_type="application/json", headers=headers)

    def as_csv() -> Iterator[str]:
        columns = ["id", "severity", "kind", "rule", "title", "status", "asset", "where", "component"]
        columns += ["fixed_versions", "kev", "first_seen", "last_seen", "fingerprint"]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for item in pages():
            d = item.detail
            comp = d.get("component") or {}
            where = finding_location_text(d)
            row = [
                item.id,
                item.severity.value,
                item.kind.value,
                item.rule,
                item.title,
                item.status.value,
                d["asset"]["name"],
                where,
                f"{comp.get('name', '')} {comp.get('version', '')}".strip(),
                " ".join(d.get("fixed_versions") or []),
                "yes" if d.get("kev") else "",
                d.get("first_seen") or "",
                d.get("last_seen") or "",
                item.fingerprint,
            ]
            writer.writerow([spreadsheet_safe(cell) for cell in row])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    headers = {"Content-Disposition": 'attachment; filename="tianmu-findings.csv"', **audit_tip}
    return StreamingResponse(as_csv(), media_type="text/csv; charset=utf-8", headers=headers)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> object:
    """A CSV cell a spreadsheet shows as text, never evaluates (OWASP "CSV injection").

    Package names, file names and advisory titles are chosen by whoever wrote the scanned files or the
    imported advisories; a cell starting with a formula character would run in the analyst's Excel or
    LibreOffice. A leading `'` makes it text there; numbers we write ourselves (ids) are left alone.
    """
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def finding_location_text(detail: dict[str, object]) -> str:
    comp = detail.get("component")
    if isinstance(comp, dict) and isinstance(comp.get("location"), dict):
        loc = comp["location"]
        return f"{loc['path']}:{loc['line']}" if loc.get("line") else str(loc["path"])
    evidence = detail.get("evidence")
    if isinstance(evidence, dict) and evidence.get("path"):
        line = evidence.get("line") or evidence.get("record")
        return f"{evidence['path']}:{line}" if line else str(evidence["path"])
    return ""


@router.get("/{finding_id}", response_model=FindingPublic, summary="One finding")
def read_finding(finding_id: int, store: StoreDep, principal: Reader) -> FindingPublic:
    return finding_public(_one(store, principal.tenant, finding_id))


@router.patch(
    "/{finding_id}", response_model=FindingPublic, summary="Triage one finding", dependencies=[CsrfChecked]
)
def triage_finding(
    finding_id: int, body: TriageUpdate, store: StoreDep, principal: Triager, audit: AuditDep
) -> FindingPublic:
    before = _one(store, principal.tenant, finding_id)
    bulk_set_status(store, principal.tenant, [finding_id], body.status)
    audit.record(
        "finding.triage",
        str(finding_id),
        status=body.status.value,
        previous=before.finding.status.value,
        rule=before.finding.rule_id,
        ids=[finding_id],
        changed=1,
    )
    return finding_public(_one(store, principal.tenant, finding_id))


def _one(store: Store, tenant: str, finding_id: int) -> PagedFinding:
    """The finding, or 404 — also when it exists in another tenant (its existence is not disclosed)."""
    found = get_finding(store, tenant, finding_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no finding {finding_id}")
    return found
