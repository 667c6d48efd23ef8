"""Jobs as clients see them: shared by /v1/jobs and its event streams."""

from __future__ import annotations

import time

from core import fairness
from core.records import JobRecord, JobStatus
from core.settings import Settings
from core.store import Store
from service.errors import not_found
from service.schemas import JobOut


def job_view(job: JobRecord, waiting: dict | None = None) -> dict:
    """A job record as clients see it (JobOut's fields only: no tenant, attempt or RQ id),
    with progress and ETA worked out."""
    epoch, epochs = job.epoch, job.epochs
    elapsed = ((job.finished_at or time.time()) - job.started_at) if job.started_at else None
    eta = None
    if job.status == JobStatus.RUNNING and elapsed and epoch:
        eta = elapsed / epoch * (epochs - epoch)
    elif job.finished:
        eta = 0.0
    return JobOut.model_validate({
        **job.model_dump(), "waiting": waiting,
        "progress": {"epoch": epoch, "epochs": epochs, "fraction": epoch / epochs,
                     "elapsed_s": elapsed, "eta_s": eta}}).model_dump(mode="json")


def waiting_of(settings: Settings, job: JobRecord, position: int | None) -> dict | None:
    if position is None:
        return None
    active, queued = settings.max_active_jobs_per_tenant, settings.max_queued_jobs_per_tenant
    return {"position": position,
            "reason": f"this tenant's jobs go to the workers {queued} at a time, so workers "
                      f"take tenants' jobs in turn ({fairness.QUEUED_SETTING}={queued}), and "
                      f"at most {active} of them are queued or running at once "
                      f"({fairness.SETTING}={active}); this one goes into the queue as one of "
                      f"them starts or ends ({position - 1} of its jobs go first)"}


def viewed(store: Store, settings: Settings, jobs: list[JobRecord]) -> list[dict]:
    positions = fairness.backlog_positions(store, jobs)
    return [job_view(job, waiting_of(settings, job, positions.get(job.id))) for job in jobs]


def owned_job(store: Store, tenant: str, job_id: str) -> JobRecord:
    job = store.job(tenant, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job

