"""Jobs: the work queue shared by `tianmu serve`, the API and `tianmu worker` processes.

- `models`: Job, JobStatus and the guarantees (idempotent submission, exactly-once completion, no loss);
- `queue`: the job table operations (submit, claim under a lease, renew, complete, cancel, reap);
- `handlers`: the job kinds (assess, kb_import, kb_update, reassess, discover, web, domain), library calls;
- `runner`: `execute_job`, the in-process runner (fair across tenants), scheduling; `celery_app`: Celery
  workers;
- `execute`, `isolation`: one claimed job run in a child process with memory and time limits, killed
  on a cancel, its end recorded however it came.
"""

from tianmu.jobs.handlers import JOB_KINDS, validate_params
from tianmu.jobs.models import Job, JobStatus
from tianmu.jobs.queue import cancel, get_job, list_jobs
from tianmu.jobs.runner import InProcessRunner, Outcome, Runner, execute_job, submit_job

__all__ = [
    "JOB_KINDS",
    "InProcessRunner",
    "Job",
    "JobStatus",
    "Outcome",
    "Runner",
    "cancel",
    "execute_job",
    "get_job",
    "list_jobs",
    "submit_job",
    "validate_params",
]
