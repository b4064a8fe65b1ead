"""Jobs: units of work that a runner executes, in this process or on Celery workers elsewhere.

A job is a row of the `jobs` table before it is a message: the database is the truth about what is
queued, running, done, failed or cancelled, and the broker only says "look at job X". That is what
makes the guarantees hold whatever the broker does:

- *idempotent submission*: a job submitted twice with the same idempotency key is one job;
- *exactly-once completion*: a worker claims a job with a conditional UPDATE (only one claim can win)
  and holds it by a lease it renews while it works; the job's effects (the stored assessment) and the
  `done` mark are written in one transaction guarded by the claim, so a second run of the same job
  can never commit its effects twice;
- *no loss*: a worker killed mid-job stops renewing its lease; once the lease has passed, any worker's
  reaper queues the job again, and the next worker runs it from the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tianmu.core.errors import Interrupted

__all__ = ["Job", "JobCancelled", "JobStatus"]


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class JobCancelled(Interrupted):
    """Raised inside a running job when its cancellation was requested; the job ends `cancelled`.

    An `Interrupted`, so the road's isolation of failing engines and records never swallows it."""


@dataclass(slots=True)
class Job:
    """One row of the `jobs` table."""

    id: str
    """A UUID, given at submission."""
    tenant: str
    """The tenant the job works for; other tenants never see it."""
    kind: str
    """A key of `tianmu.jobs.handlers.JOB_KINDS` (`assess`, `kb_import`...)."""
    params: dict[str, Any]
    """The parameters as the kind's check returned them."""
    status: JobStatus
    created: datetime
    attempts: int = 0
    """Runs claimed so far; a job lost `TIANMU_JOB_MAX_ATTEMPTS` times is failed as a poison job."""
    worker: str | None = None
    """Who holds (or last held) the job: `name@host:pid:thread`."""
    lease_until: datetime | None = None
    """While running: the worker holds the job until then unless it renews the lease."""
    cancel_requested: bool = False
    progress: str = ""
    """The handler's last progress message."""
    result: dict[str, Any] | None = None
    """What the job did (counts, ids); with `error_count`, the first `errors` and `partial` when it
    read something but not everything (`tianmu.jobs.handlers.honest`)."""
    error: str | None = None
    """Why a failed job failed: the handler's error, or the limit it hit in its process."""
    started: datetime | None = None
    finished: datetime | None = None
    idempotency_key: str | None = None
    submitted_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """The job read something but not everything: its result counts what was read, not all."""
        return bool((self.result or {}).get("partial"))

    @property
    def error_count(self) -> int:
        """Errors of the job's result (unreadable files, failed engines, refused records)."""
        count = (self.result or {}).get("error_count")
        return count if isinstance(count, int) else 0

    @property
    def first_errors(self) -> list[str]:
        """The first of those errors, as the result quotes them."""
        errors = (self.result or {}).get("errors")
        return [str(e) for e in errors] if isinstance(errors, list) else []

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for `--json` output and the API."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "id": self.id,
            "tenant": self.tenant,
            "kind": self.kind,
            "params": self.params,
            "status": self.status.value,
            "attempts": self.attempts,
            "worker": self.worker,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "created": iso(self.created),
            "started": iso(self.started),
            "finished": iso(self.finished),
            "idempotency_key": self.idempotency_key,
            "submitted_by": self.submitted_by,
        }
