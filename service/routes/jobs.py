"""/v1/jobs: submit, poll, list, history, cancel, delete."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service import arrays
from service.deps import ModelCacheDep, SettingsDep, StoreDep, TenantDep, parsed, require_json
from service.errors import ApiError, not_found
from service.schemas import HistoryOut, JobIn, JobList, JobOut, error_responses
from service.submission import submit
from worker import queues
from worker.status import JobStatus
from worker.store import Store, is_finished

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=error_responses(401, 422, 503))


def job_view(meta: dict) -> dict:
    """A job record as clients see it, with progress and ETA worked out."""
    epoch, epochs = int(meta.get("epoch") or 0), int(meta["epochs"])
    started, finished = meta.get("started_at"), meta.get("finished_at")
    elapsed = ((finished or time.time()) - started) if started else None
    eta = None
    if meta["status"] == JobStatus.RUNNING.value and elapsed and epoch:
        eta = elapsed / epoch * (epochs - epoch)
    elif is_finished(meta):
        eta = 0.0
    return {**meta, "restarts": int(meta.get("restarts") or 0),
            "cancel_requested": bool(meta.get("cancel_requested")),
            "progress": {"epoch": epoch, "epochs": epochs, "fraction": epoch / epochs,
                         "elapsed_s": elapsed, "eta_s": eta}}


def owned_job(store: Store, tenant: str, job_id: str) -> dict:
    meta = store.job(tenant, job_id)
    if meta is None:
        raise not_found("job", job_id)
    return meta


JOB_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/JobIn"}}}}}


@router.post("", status_code=202, response_model=JobOut, dependencies=[Depends(require_json)],
             responses=error_responses(413, 415), openapi_extra=JOB_BODY)
async def submit_job(request: Request, response: Response, store: StoreDep,
                     settings: SettingsDep, tenant: TenantDep):
    """Check a network, training settings and data, then queue the training job."""
    # The body (JobIn) is parsed here, in a decoder thread: FastAPI would parse it on the
    # event loop, and before the key is checked.
    job = await arrays.off_loop(parsed, JobIn, await request.body())
    meta = await run_in_threadpool(submit, store, settings, tenant, job)
    response.headers["Location"] = f"/v1/jobs/{meta['id']}"
    return job_view(meta)


@router.get("", response_model=JobList)
def list_jobs(store: StoreDep, tenant: TenantDep,
              status: Literal["queued", "running", "succeeded", "failed", "canceled"] | None = None,
              limit: int = Query(100, ge=1, le=1000)):
    """Newest first; `?status=running` filters."""
    return {"jobs": [job_view(m) for m in store.jobs(tenant, status, limit)]}


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(404))
def get_job(job_id: str, store: StoreDep, tenant: TenantDep):
    return job_view(owned_job(store, tenant, job_id))


@router.get("/{job_id}/history", response_model=HistoryOut, responses=error_responses(404))
def get_history(job_id: str, store: StoreDep, tenant: TenantDep,
                since_epoch: int = Query(0, ge=0, le=10**9,
                                         description="only epochs after this one")):
    meta = owned_job(store, tenant, job_id)
    return {"job_id": job_id, "status": meta["status"],
            "epochs": store.history(job_id, since_epoch)}


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut,
             responses=error_responses(404, 409))
def cancel_job(job_id: str, store: StoreDep, settings: SettingsDep, tenant: TenantDep):
    """A queued job never starts; a running one stops within an epoch and keeps its weights."""
    meta = owned_job(store, tenant, job_id)
    if is_finished(meta):
        raise ApiError(409, f"job {job_id} already {meta['status']}; nothing to cancel")
    store.request_cancel(job_id)
    if (meta["status"] == JobStatus.QUEUED.value and store.checkpoint(job_id) is None
            and queues.take_back_queued(store.r, settings, meta["device"], meta["rq_id"])):
        store.finish_job(job_id, JobStatus.CANCELED, settings.result_ttl_s)
    # Otherwise a worker has the job, or will resume it from a checkpoint: it sees the flag
    # within an epoch (at once, for a resume) and keeps the weights it has as the model.
    return job_view(owned_job(store, tenant, job_id))


@router.delete("/{job_id}", status_code=204, responses=error_responses(404, 409))
def delete_job(job_id: str, store: StoreDep, tenant: TenantDep, models: ModelCacheDep,
               keep_model: bool = Query(False, description="keep the trained model")):
    """Remove a finished job, its history and (unless keep_model) its model."""
    meta = owned_job(store, tenant, job_id)
    if not is_finished(meta):
        raise ApiError(409, f"job {job_id} is {meta['status']}; cancel it first")
    store.delete_job(tenant, job_id, with_model=not keep_model)
    if not keep_model:
        models.evict(meta.get("model_id"))
    return Response(status_code=204)
