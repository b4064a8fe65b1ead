"""/api/v1/kb: knowledge-base status for everyone; imports and updates for administrators."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from tianmu.identity.models import Permission, Principal
from tianmu.jobs import submit_job
from tianmu.road.knowledge import kb_status
from tianmu.service.api.audit import AuditDep
from tianmu.service.api.context import RunnerDep, SettingsDep, StoreDep
from tianmu.service.api.deps import CsrfChecked, require
from tianmu.service.api.resources import JobPublic, job_public
from tianmu.service.api.routes.jobs import MAX_UPLOAD_BYTES, _receive

__all__ = ["router"]

router = APIRouter(prefix="/kb", tags=["knowledge bases"])

Reader = Annotated[Principal, Depends(require(Permission.SITUATION_READ))]
Manager = Annotated[Principal, Depends(require(Permission.KB_MANAGE))]


@router.get("", summary="Every knowledge base source: records, version, digest, import date")
def status(store: StoreDep, principal: Reader) -> list[dict[str, Any]]:
    return [row.as_dict() for row in kb_status(store)]


@router.post(
    "/imports",
    response_model=JobPublic,
    status_code=202,
    summary="Upload and import a file",
    dependencies=[CsrfChecked],
)
async def import_upload(
    request: Request,
    store: StoreDep,
    runner: RunnerDep,
    settings: SettingsDep,
    principal: Manager,
    audit: AuditDep,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
) -> JobPublic:
    """The raw body is a knowledge-base file (OSV all.zip, KEV JSON, YARA rules, a STIX bundle...)."""
    folder = settings.home / "kb-uploads" / uuid.uuid4().hex
    limit = getattr(request.app.state, "max_upload_bytes", MAX_UPLOAD_BYTES)
    target = await _receive(request, folder, filename, limit)
    job, _ = submit_job(
        store,
        runner,
        "kb_import",
        {"path": str(target)},
        tenant=principal.tenant,
        submitted_by=principal.username,
    )
    audit.record("kb.import", filename, job=job.id, size=target.stat().st_size, path=str(target))
    return job_public(job)


@router.post(
    "/updates",
    response_model=JobPublic,
    status_code=202,
    summary="Update from the official sources",
    dependencies=[CsrfChecked],
)
def update(
    store: StoreDep,
    runner: RunnerDep,
    principal: Manager,
    audit: AuditDep,
    sources: Annotated[list[str] | None, Query(description="Default: every base's default sources.")] = None,
) -> JobPublic:
    job, _ = submit_job(
        store,
        runner,
        "kb_update",
        {"sources": sources or []},
        tenant=principal.tenant,
        submitted_by=principal.username,
    )
    audit.record("kb.update", ",".join(sources or []) or "default sources", job=job.id)
    return job_public(job)
