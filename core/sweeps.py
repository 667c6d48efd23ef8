"""A sweep's typed record and its store: many trials of one job, each trial a job of its own.

The record holds what the sweep was asked (strategy, rungs, metric, space, base) and one Trial
per trial: its drawn params, the job record it starts as (validated by the API at submit), its
job id once started, and its metric at each rung it reached. A trial's live state (queued,
running, paused, ended, epochs, worker) is its job's: the sweep reads it, never copies it.

Every write to a sweep is a WATCH/MULTI transaction over its hash that bumps `version`, so two
scheduler passes (core.sweep_scheduler) never both act on what they read.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.records import JobRecord, JobStatus, Record, new_id
from core.store import Page, Store

# The epoch-record fields a sweep can rank on, and which way is better.
METRICS: dict[str, Literal["max", "min"]] = {
    "val_metric": "max", "metric": "max", "val_loss": "min", "loss": "min"}
STRATEGIES = ("asha", "random", "grid")


class SweepStatus(str, Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self != SweepStatus.RUNNING


class Trial(BaseModel):
    index: int
    params: dict[str, Any]
    job: dict[str, Any] = Field(..., description="the JobRecord fields it starts with")
    job_id: str | None = None
    # Metric at each rung reached (epoch -> value), as the trial paused there.
    rungs: dict[int, float | None] = Field(default_factory=dict)
    stopped: bool = False   # the scheduler ended it at a rung (not in the top 1/eta)
    skipped: bool = False   # never started: the sweep was canceled or ran out of time


class SweepRecord(Record):
    id: str = Field(default_factory=lambda: new_id("sweep"))
    tenant: str
    status: SweepStatus = SweepStatus.RUNNING
    dataset_id: str
    strategy: Literal["asha", "random", "grid"] = "asha"
    metric: str = "val_metric"
    mode: Literal["max", "min"] = "max"
    reduction_factor: int = 3
    min_epochs: int = 1
    max_epochs: int = 1
    rungs: list[int] = Field(default_factory=list, description="epochs where trials pause")
    seed: int = 0
    max_runtime_s: float | None = None
    parallel: int | None = Field(None, description="most trials queued or running at once "
                                                   "(None: the live workers of its queue)")
    queue: str = "training"
    space: dict[str, Any] = Field(default_factory=dict)
    base: dict[str, Any] = Field(default_factory=dict)
    trials: list[Trial] = Field(default_factory=list)
    created_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    cancel_requested: bool = False
    best: dict[str, Any] | None = None
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def deadline(self) -> float | None:
        return None if self.max_runtime_s is None else self.created_at + self.max_runtime_s

    def better(self, a: float | None, b: float | None) -> bool:
        """Whether metric value a beats b (a missing or NaN value loses)."""
        if a is None or a != a:
            return False
        if b is None or b != b:
            return True
        return a > b if self.mode == "max" else a < b

    def ranked(self, values: list[tuple[float | None, int]]) -> list[int]:
        """Trial indexes of (value, index) pairs, best first (missing values last)."""
        sign = -1 if self.mode == "max" else 1
        return [i for v, i in sorted(values, key=lambda p: (p[0] is None or p[0] != p[0],
                                                            0 if p[0] is None or p[0] != p[0]
                                                            else sign * p[0], p[1]))]


def metric_of(sweep: SweepRecord, job: JobRecord | None) -> float | None:
    value = (job.metrics or {}).get(sweep.metric) if job is not None else None
    return float(value) if isinstance(value, (int, float)) else None


def put(store: Store, sweep: SweepRecord) -> None:
    k = store.keys
    pipe = store.r.pipeline(transaction=True)
    pipe.hset(k.sweep(sweep.id), mapping=sweep.encode())
    pipe.zadd(k.sweeps_of(sweep.tenant), {sweep.id: sweep.created_at})
    pipe.sadd(k.sweeps_running(), sweep.id)
    pipe.execute()


def get(store: Store, tenant: str | None, sweep_id: str, reader: Any = None
        ) -> SweepRecord | None:
    raw = (reader or store.r).hgetall(store.keys.sweep(sweep_id))
    if not raw:
        return None
    sweep = SweepRecord.decode(raw)
    return sweep if tenant is None or sweep.tenant == tenant else None


def tenant_of(store: Store, sweep_id: str) -> str | None:
    raw = store.r.hget(store.keys.sweep(sweep_id), "tenant")
    return None if raw is None else json.loads(raw)


def listed(store: Store, tenant: str, limit: int, before: str | None) -> Page:
    return store._listed(store.keys.sweeps_of(tenant), store.keys.sweep, SweepRecord.decode,
                         limit, before)


def running_ids(store: Store) -> list[str]:
    return sorted(i.decode() for i in store.r.smembers(store.keys.sweeps_running()))


def trial_jobs(store: Store, sweep: SweepRecord, reader: Any = None) -> dict[int, JobRecord]:
    """The job of every started trial, by trial index, in one round trip (gone jobs left out)."""
    started = [t for t in sweep.trials if t.job_id]
    pipe = (reader or store.r).pipeline(transaction=False)
    for trial in started:
        pipe.hgetall(store.keys.job(trial.job_id))
    return {t.index: JobRecord.decode(raw) for t, raw in zip(started, pipe.execute()) if raw}


def request_cancel(store: Store, sweep_id: str) -> None:
    key = store.keys.sweep(sweep_id)

    def write(pipe) -> None:
        if pipe.exists(key):
            pipe.multi()
            pipe.hset(key, mapping=SweepRecord.encode_fields(cancel_requested=True))
            pipe.hincrby(key, "version", 1)

    store.transact(write, key)


def delete(store: Store, tenant: str, sweep_id: str, with_models: bool = True) -> bool:
    """Remove an ended sweep and its trials' jobs (and their models unless with_models=False)."""
    sweep = get(store, tenant, sweep_id)
    if sweep is None or not sweep.finished:
        return False
    for trial in sweep.trials:
        if trial.job_id:
            store.delete_job(tenant, trial.job_id, with_model=with_models)
    k = store.keys
    pipe = store.r.pipeline(transaction=True)
    pipe.delete(k.sweep(sweep_id))
    pipe.zrem(k.sweeps_of(tenant), sweep_id)
    pipe.srem(k.sweeps_running(), sweep_id)
    pipe.execute()
    return True


def trial_status(trial: Trial, job: JobRecord | None) -> str:
    """What the sweep's leaderboard says of a trial."""
    if trial.skipped:
        return "skipped"
    if job is None:
        return "pending" if trial.job_id is None else "deleted"
    if trial.stopped and job.status in (JobStatus.CANCELED, JobStatus.PAUSED):
        return "stopped"
    return job.status.value


def best_of(sweep: SweepRecord, jobs: dict[int, JobRecord]) -> dict[str, Any] | None:
    """The trial with the best final metric among those that stored a model."""
    done = [(metric_of(sweep, jobs[t.index]), t.index) for t in sweep.trials
            if t.index in jobs and jobs[t.index].status == JobStatus.SUCCEEDED
            and jobs[t.index].model_id]
    if not done:
        return None
    i = sweep.ranked(done)[0]
    job = jobs[i]
    return {"job_id": job.id, "model_id": job.model_id, "params": sweep.trials[i].params,
            "metric": metric_of(sweep, job), "epochs": job.epoch}
