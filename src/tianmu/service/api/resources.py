"""Request and response models of the REST API's situation resources (findings, assets, jobs, kb).

Named as the FastAPI template does: `XPublic` is what the API returns, `XCreate`/`XUpdate` what it
accepts. Conversions from the library's dataclasses live here, so routes stay one call long.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tianmu.core.models import AssetKind, FindingKind, Severity, TriageStatus
from tianmu.jobs.models import Job, JobStatus
from tianmu.reports.json_report import finding_to_dict
from tianmu.store.queries import AssetSummary, PagedFinding

__all__ = [
    "AssetPublic",
    "AssetUpdate",
    "BulkTriage",
    "FindingPage",
    "FindingPublic",
    "JobCreate",
    "JobPublic",
    "TriageUpdate",
    "asset_public",
    "finding_public",
    "job_public",
]


class FindingPublic(BaseModel):
    """A finding as the JSON report writes it (docs/json-report.md), plus its id and asset id."""

    id: int
    asset_id: int
    kind: FindingKind
    rule: str = Field(description="Primary advisory, rule or signature id (the report's `id`).")
    title: str
    severity: Severity
    status: TriageStatus
    first_seen: datetime | None
    last_seen: datetime | None
    fingerprint: str
    asset_label: str = Field(description="What people call the finding's asset (its path when unlabelled).")
    detail: dict[str, Any] = Field(description="The whole finding as in the JSON report.")


class FindingPage(BaseModel):
    items: list[FindingPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class TriageUpdate(BaseModel):
    status: TriageStatus


class BulkTriage(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=10_000)
    status: TriageStatus


class AssetPublic(BaseModel):
    id: int
    name: str
    label: str
    """What people call the asset (host name, remote, folder name); `name` is its resolved path."""
    kind: AssetKind
    criticality: int
    tags: list[str]
    first_seen: datetime
    last_seen: datetime
    components: int
    open_by_severity: dict[str, int]


class AssetUpdate(BaseModel):
    criticality: int | None = Field(default=None, ge=1, le=5)
    tags: list[str] | None = None


class JobCreate(BaseModel):
    kind: str = Field(description="assess, kb_import, kb_update, reassess (see GET /api/v1/jobs/kinds).")
    params: dict[str, Any] = Field(default_factory=dict)


class JobPublic(BaseModel):
    id: str
    kind: str
    params: dict[str, Any]
    status: JobStatus
    attempts: int
    progress: str
    result: dict[str, Any] | None
    error: str | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    submitted_by: str | None


def finding_public(item: PagedFinding) -> FindingPublic:
    f = item.finding
    return FindingPublic(
        id=item.id,
        asset_id=item.asset_id,
        kind=f.kind,
        rule=f.rule_id,
        title=f.title,
        severity=f.severity,
        status=f.status,
        first_seen=f.first_seen,
        last_seen=f.last_seen,
        fingerprint=f.fingerprint,
        asset_label=f.asset.label or f.asset.name,
        detail=finding_to_dict(f),
    )


def asset_public(summary: AssetSummary) -> AssetPublic:
    a = summary.asset
    return AssetPublic(
        id=summary.id,
        name=a.name,
        label=a.label or a.name,
        kind=a.kind,
        criticality=a.criticality,
        tags=list(a.tags),
        first_seen=summary.first_seen,
        last_seen=summary.last_seen,
        components=summary.components,
        open_by_severity=summary.open_by_severity,
    )


def job_public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id,
        kind=job.kind,
        params=job.params,
        status=job.status,
        attempts=job.attempts,
        progress=job.progress,
        result=job.result,
        error=job.error,
        created=job.created,
        started=job.started,
        finished=job.finished,
        submitted_by=job.submitted_by,
    )
