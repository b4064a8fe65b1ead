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
    id: str
    tenant: str
    kind: str
    params: dict[str, Any]
    status: JobStatus
    created: datetime
    attempts: int = 0
    worker: str | None = None
    lease_until: datetime | None = None
    cancel_requested: bool = False
    progress: str = ""
    result: dict[str, Any] | None = None
    error: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    idempotency_key: str | None = None
    submitted_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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
