"""/v1/jobs: submit, poll, list, history, cancel, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from core import fairness, queues
from core.records import JobStatus, Owner
from service import pools
from service.openapi_extra import JOB_BODY
from service.bodies import require_json
from service.deps import IdCheckedRoute, ModelCacheDep, SettingsDep, StoreDep, TenantDep
from service.errors import ApiError
from service.job_views import owned_job, viewed
from service.schemas import HistoryOut, JobList, JobOut, error_responses
from service.submission import parse_job, submit

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=error_responses(401, 422, 503),
                   route_class=IdCheckedRoute)


@router.post("", status_code=202, response_model=JobOut, dependencies=[Depends(require_json)],
             responses=error_responses(413, 415), openapi_extra=JOB_BODY)
async def submit_job(request: Request, response: Response, store: StoreDep,
                     settings: SettingsDep, tenant: TenantDep):
    """Check a network, training settings and data, then queue the training job."""
    # The body (JobIn) is parsed here, off the event loop: FastAPI would parse it on the
    # event loop, and before the key is checked.
    decoded = await pools.decode_json_body(parse_job, await request.body(), settings,
                                       tenant=tenant)
    record = await run_in_threadpool(submit, store, settings, tenant, decoded)
    response.headers["Location"] = f"/v1/jobs/{record.id}"
    return viewed(store, settings, [record])[0]


@router.get("", response_model=JobList)
def list_jobs(store: StoreDep, settings: SettingsDep, tenant: TenantDep,
              status: JobStatus | None = None,
              limit: int = Query(100, ge=1, le=1000),
              before: str | None = Query(None, max_length=200,
                                         description="the `next` cursor of the previous page")):
    """Newest first; `?status=running` filters (before the limit). Follow `next` with
    `?before=` for older jobs."""
    page = store.jobs(tenant, status, limit, before)     # BadCursor: 422 (errors.ANSWERS)
    return {"jobs": viewed(store, settings, page.items), "next": page.next}


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(404))
def get_job(job_id: str, store: StoreDep, settings: SettingsDep, tenant: TenantDep):
    return viewed(store, settings, [owned_job(store, tenant, job_id)])[0]


@router.get("/{job_id}/history", response_model=HistoryOut, responses=error_responses(404))
def get_history(job_id: str, store: StoreDep, tenant: TenantDep,
                since_epoch: int = Query(0, ge=0, le=10**9,
                                         description="only epochs after this one")):
    job = owned_job(store, tenant, job_id)
    return {"job_id": job_id, "status": job.status, "kept_epoch": job.kept_epoch,
            "epochs": store.history(job_id, since_epoch)}


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut,
             responses=error_responses(404, 409))
def cancel_job(job_id: str, store: StoreDep, settings: SettingsDep, tenant: TenantDep):
    """A queued job never starts; a running one stops within an epoch and keeps its weights."""
    job = owned_job(store, tenant, job_id)
    if job.finished:
        raise ApiError(409, f"job {job_id} already {job.status.value}; nothing to cancel")
    store.request_cancel(job_id)
    if job.status == JobStatus.PAUSED:  # a sweep's trial parked at a rung: end it here
        fairness.finish(store, settings, job_id, tenant, JobStatus.CANCELED,
                        Owner(job.attempt, JobStatus.PAUSED))
    # A backlogged job is in no RQ queue; a queued one is ended here only if taken off its
    # queue before a worker popped it. Either way only while still queued for that attempt.
    if job.status == JobStatus.QUEUED and store.checkpoint(job_id) is None and (
            job.backlogged or queues.take_back_queued(store.r, settings, job.device, job.rq_id)):
        fairness.finish(store, settings, job_id, tenant, JobStatus.CANCELED,
                        Owner(job.attempt, JobStatus.QUEUED))
    # Otherwise a worker has the job, or will resume it from a checkpoint: it sees the flag
    # within an epoch (at once, for a resume) and keeps the weights it has as the model.
    return viewed(store, settings, [owned_job(store, tenant, job_id)])[0]


@router.delete("/{job_id}", status_code=204, responses=error_responses(404, 409))
def delete_job(job_id: str, store: StoreDep, tenant: TenantDep, models: ModelCacheDep,
               keep_model: bool = Query(False, description="keep the trained model")):
    """Remove a finished job, its history and (unless keep_model) its model."""
    job = owned_job(store, tenant, job_id)
    if not job.finished:
        raise ApiError(409, f"job {job_id} is {job.status.value}; cancel it first")
    store.delete_job(tenant, job_id, with_model=not keep_model)
    if not keep_model:
        models.evict(job.model_id)
    return Response(status_code=204)
