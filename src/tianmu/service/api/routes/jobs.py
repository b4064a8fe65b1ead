"""/api/v1/jobs and /api/v1/uploads: submit work, follow it, cancel it; stream logs and SBOMs in."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request

from tianmu.core.errors import InputError
from tianmu.identity.models import Permission, Principal
from tianmu.jobs import JOB_KINDS, JobStatus, cancel, get_job, list_jobs, submit_job
from tianmu.service.api.audit import AuditDep
from tianmu.service.api.context import RunnerDep, SettingsDep, StoreDep
from tianmu.service.api.deps import CsrfChecked, ServiceSettingsDep, require
from tianmu.service.api.resources import JobCreate, JobPublic, job_public
from tianmu.service.settings import ServiceSettings

__all__ = ["allowed_server_path", "router", "uploads_router"]

router = APIRouter(prefix="/jobs", tags=["jobs"])
uploads_router = APIRouter(prefix="/uploads", tags=["jobs"])

Reader = Annotated[Principal, Depends(require(Permission.SITUATION_READ))]
Runner_ = Annotated[Principal, Depends(require(Permission.ASSESS_RUN))]

# Jobs that read a server path: only under the folders the operator gave the tenant
# (`TIANMU_ASSESS_ROOTS`) or the tenant's own uploads. Importing into the knowledge bases, which every
# tenant shares, is moreover for administrators.
_PATH_KINDS = {"assess", "kb_import"}
_ADMIN_KINDS = {"kb_import", "kb_update"}
MAX_UPLOAD_BYTES = 2 * 1024**3
"""An upload larger than this is refused with 413 before more of it is written."""
_CHUNK = 1 << 20


@router.get("/kinds", summary="The kinds of job there are")
def kinds(principal: Reader) -> dict[str, str]:
    return {kind.name: kind.description for kind in JOB_KINDS.values()}


@router.post(
    "", response_model=JobPublic, status_code=202, summary="Submit a job", dependencies=[CsrfChecked]
)
def submit(
    body: JobCreate,
    store: StoreDep,
    runner: RunnerDep,
    principal: Runner_,
    service_settings: ServiceSettingsDep,
    audit: AuditDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    if body.kind in _ADMIN_KINDS and principal.role.value not in ("owner", "admin"):
        raise HTTPException(
            status_code=403, detail="only an admin may import into or update the knowledge bases"
        )
    params = dict(body.params)
    if body.kind in _PATH_KINDS and isinstance(params.get("path"), str) and params["path"].strip():
        params["path"] = str(allowed_server_path(service_settings, principal.tenant, params["path"]))
    authorized = str(body.params.get("authorized", "")).lower() in ("1", "true", "yes")
    if authorized and principal.role.value not in ("owner", "admin"):
        # Scanning beyond private ranges is a decision with legal weight: administrators only.
        raise HTTPException(status_code=403, detail="only an admin may scan outside private ranges")
    try:
        job, created = submit_job(
            store,
            runner,
            body.kind,
            params,
            tenant=principal.tenant,
            idempotency_key=idempotency_key,
            submitted_by=principal.username,
        )
    except InputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    if created:  # a repeated idempotent submission changes nothing
        audit.record("job.submit", job.id, kind=body.kind, params=params)
    return job_public(job)


def allowed_server_path(settings: ServiceSettings, tenant: str, text: str) -> Path:
    """`text` resolved (symbolic links followed), when it lies under one of the tenant's roots or its
    own uploads; 422 for a relative path, 403 otherwise, naming what is allowed.

    The job is given the resolved path, so a link swapped in after this check points nowhere new.
    """
    path = Path(text)
    if not path.is_absolute():
        raise HTTPException(status_code=422, detail=f"path {text!r} must be absolute (as the server sees it)")
    real = Path(os.path.realpath(path))
    uploads = Path(os.path.realpath(settings.core.home / "uploads" / tenant))
    roots = (*settings.roots_for(tenant), uploads)
    if any(real == root or real.is_relative_to(root) for root in roots):
        return real
    configured = ", ".join(str(r) for r in settings.roots_for(tenant)) or "none"
    raise HTTPException(
        status_code=403,
        detail=(
            f"{text} is outside the server folders tenant {tenant!r} may read (TIANMU_ASSESS_ROOTS: "
            f"{configured}); upload the files instead (POST /api/v1/uploads/logs or /sbom)"
        ),
    )


@router.get("", response_model=list[JobPublic], summary="List jobs, newest first")
def list_(
    store: StoreDep,
    principal: Reader,
    status: JobStatus | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[JobPublic]:
    return [job_public(j) for j in list_jobs(store, principal.tenant, status=status, kind=kind, limit=limit)]


@router.get("/{job_id}", response_model=JobPublic, summary="One job: state, progress, result")
def get(job_id: str, store: StoreDep, principal: Reader) -> JobPublic:
    job = get_job(store, job_id, principal.tenant)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id}")
    return job_public(job)


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job", dependencies=[CsrfChecked])
def cancel_(job_id: str, store: StoreDep, principal: Runner_, audit: AuditDep) -> JobPublic:
    try:
        job = cancel(store, job_id, principal.tenant)
    except InputError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    audit.record("job.cancel", job_id, kind=job.kind, status=job.status.value)
    return job_public(job)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


async def _receive(request: Request, folder: Path, filename: str, limit: int) -> Path:
    """Stream the request body to `folder/filename`, never holding more than one chunk in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"upload larger than the limit of {limit} bytes")
    name = _SAFE_NAME.sub("_", Path(filename).name).strip("._") or "upload"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    written = 0
    try:
        with target.open("wb") as handle:
            async for chunk in request.stream():
                written += len(chunk)
                if written > limit:
                    raise HTTPException(
                        status_code=413, detail=f"upload larger than the limit of {limit} bytes"
                    )
                handle.write(chunk)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if written == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(status_code=400, detail="empty upload: send the file as the request body")
    return target


@uploads_router.post(
    "/{what}",
    response_model=JobPublic,
    status_code=202,
    summary="Upload logs or an SBOM",
    dependencies=[CsrfChecked],
)
async def upload(
    what: str,
    request: Request,
    store: StoreDep,
    runner: RunnerDep,
    settings: SettingsDep,
    principal: Runner_,
    audit: AuditDep,
    filename: Annotated[str, Query(min_length=1, max_length=255, description="The file's name.")],
) -> JobPublic:
    """Send the file as the raw request body (`Content-Type: application/octet-stream`).

    `logs`: a log file (or .gz/.zip of logs) for the detection engine; `sbom`: a CycloneDX or SPDX JSON
    SBOM for the vulnerability engine. The file is kept under the data directory and assessed as a
    job of the caller's tenant; the job is returned (202) for the caller to follow.
    """
    if what not in ("logs", "sbom"):
        raise HTTPException(status_code=404, detail=f"no upload kind {what!r} (logs, sbom)")
    folder = settings.home / "uploads" / principal.tenant / uuid.uuid4().hex
    target = await _receive(
        request, folder, filename, getattr(request.app.state, "max_upload_bytes", MAX_UPLOAD_BYTES)
    )
    job, _created = submit_job(
        store,
        runner,
        "assess",
        {"path": str(folder)},
        tenant=principal.tenant,
        submitted_by=principal.username,
    )
    audit.record(f"upload.{what}", filename, job=job.id, size=target.stat().st_size, path=str(target))
    return job_public(job)
