"""/v1/sweeps: start a hyperparameter sweep, follow its leaderboard, cancel, delete."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from core import sweep_scheduler, sweeps
from core.records import JobRecord
from core.store import BadCursor, Store
from core.sweeps import SweepRecord
from service.bodies import parsed, require_json
from service.deps import IdCheckedRoute, ModelCacheDep, SettingsDep, StoreDep, TenantDep
from service.errors import ApiError, not_found
from service.schemas import error_responses
from service.sweep_submission import SweepIn, submit

router = APIRouter(route_class=IdCheckedRoute, prefix="/v1/sweeps", tags=["sweeps"],
                   responses=error_responses(401, 422, 503))


def trial_view(sweep: SweepRecord, trial: sweeps.Trial, job: JobRecord | None) -> dict:
    return {"index": trial.index, "job_id": trial.job_id, "params": trial.params,
            "status": sweeps.trial_status(trial, job),
            "epochs": job.epoch if job else 0,
            "metric": sweeps.metric_of(sweep, job),
            "rungs": {str(epoch): value for epoch, value in sorted(trial.rungs.items())},
            "worker": job.worker if job else None,
            "model_id": job.model_id if job else None}


def sweep_view(store: Store, sweep: SweepRecord, with_trials: bool = True) -> dict:
    """A sweep as clients see it: its trials best first, read live from their jobs."""
    jobs = sweeps.trial_jobs(store, sweep)
    trials = [trial_view(sweep, t, jobs.get(t.index)) for t in sweep.trials]
    order = sweep.ranked([(t["metric"], t["index"]) for t in trials])
    trials = [trials[i] for i in order]
    epochs = sum(t["epochs"] for t in trials)
    ended = sum(t["status"] in ("succeeded", "failed", "canceled", "stopped", "skipped",
                                "deleted") for t in trials)
    budget = len(sweep.trials) * sweep.max_epochs
    elapsed = (sweep.finished_at or time.time()) - sweep.created_at
    view = {
        "id": sweep.id, "status": sweep.status.value, "dataset_id": sweep.dataset_id,
        "strategy": sweep.strategy, "metric": sweep.metric, "mode": sweep.mode,
        "reduction_factor": sweep.reduction_factor, "min_epochs": sweep.min_epochs,
        "max_epochs": sweep.max_epochs, "rungs": sweep.rungs, "seed": sweep.seed,
        "max_runtime_s": sweep.max_runtime_s, "parallel": sweep.parallel,
        "created_at": sweep.created_at, "finished_at": sweep.finished_at,
        "cancel_requested": sweep.cancel_requested,
        "progress": {"trials": len(trials), "trials_ended": ended,
                     "running": sum(t["status"] == "running" for t in trials),
                     "paused": sum(t["status"] == "paused" for t in trials),
                     "epochs_trained": epochs, "epochs_if_all_trained": budget,
                     "elapsed_s": elapsed},
        "epochs_trained": epochs,
        "best": sweep.best if sweep.finished else sweeps.best_of(sweep, jobs),
        "space": sweep.space, "base": sweep.base,
    }
    if with_trials:
        view["trials"] = trials
    return view


def owned(store: Store, tenant: str, sweep_id: str) -> SweepRecord:
    sweep = sweeps.get(store, tenant, sweep_id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep


SWEEP_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": SweepIn.model_json_schema()}}}}


@router.post("", status_code=202, dependencies=[Depends(require_json)],
             responses=error_responses(413, 415), openapi_extra=SWEEP_BODY)
async def start_sweep(request: Request, response: Response, store: StoreDep,
                      settings: SettingsDep, tenant: TenantDep):
    """Draw the trials of `space` around `base`, check each as a job, and start the sweep."""
    body = await request.body()
    record = await run_in_threadpool(lambda: submit(store, settings, tenant,
                                                    parsed(SweepIn, body)))
    response.headers["Location"] = f"/v1/sweeps/{record.id}"
    return await run_in_threadpool(sweep_view, store, record)


@router.get("")
def list_sweeps(store: StoreDep, tenant: TenantDep, limit: int = Query(100, ge=1, le=1000),
                before: str | None = Query(None, max_length=200)):
    """Newest first, without their trials; follow `next` with `?before=`."""
    try:
        page = sweeps.listed(store, tenant, limit, before)
    except BadCursor as exc:
        raise ApiError(422, str(exc), "before") from None
    return {"sweeps": [sweep_view(store, s, with_trials=False) for s in page.items],
            "next": page.next}


@router.get("/{sweep_id}", responses=error_responses(404))
def get_sweep(sweep_id: str, store: StoreDep, tenant: TenantDep):
    return sweep_view(store, owned(store, tenant, sweep_id))


@router.post("/{sweep_id}/cancel", status_code=202, responses=error_responses(404, 409))
def cancel_sweep(sweep_id: str, store: StoreDep, settings: SettingsDep, tenant: TenantDep):
    """No trial starts or resumes; paused ones end, running ones stop within an epoch."""
    sweep = owned(store, tenant, sweep_id)
    if sweep.finished:
        raise ApiError(409, f"sweep {sweep_id} already {sweep.status.value}; nothing to cancel")
    sweeps.request_cancel(store, sweep_id)
    sweep_scheduler.advance(store, settings, sweep_id)
    return sweep_view(store, owned(store, tenant, sweep_id))


@router.delete("/{sweep_id}", status_code=204, responses=error_responses(404, 409))
def delete_sweep(sweep_id: str, store: StoreDep, tenant: TenantDep, models: ModelCacheDep,
                 keep_models: bool = Query(False, description="keep the trials' models")):
    """Remove an ended sweep, its trials' jobs and (unless keep_models) their models."""
    sweep = owned(store, tenant, sweep_id)
    if not sweep.finished:
        raise ApiError(409, f"sweep {sweep_id} is {sweep.status.value}; cancel it first")
    jobs = sweeps.trial_jobs(store, sweep)
    sweeps.delete(store, tenant, sweep_id, with_models=not keep_models)
    if not keep_models:
        for job in jobs.values():
            models.evict(job.model_id)
    return Response(status_code=204)
