"""A job's entry and exit, and the per-tenant limit that keeps one tenant from filling the queue.

A tenant has at most settings.max_active_jobs_per_tenant jobs that are *active*: in an RQ queue
or running (the set keys.tenant_active). Its further jobs wait, still `queued`, in its backlog
(the list keys.tenant_backlog, oldest first), not in RQ: another tenant's job is queued behind
at most that many of its jobs, not behind its whole backlog.

Each step is one transaction: `submit` stores a job and queues it or backlogs it; `finish` ends
a job, frees its slot and promotes the oldest backlogged jobs into RQ. `promote_waiting` (run by
the reaper) promotes what a crash or a raised limit left waiting, and drops active entries of
jobs that are gone or ended.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from worker import queues, quota
from worker.records import JobRecord, JobStatus, Owner
from worker.settings import Settings
from worker.store import Store

SETTING = "BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT"


def submit(store: Store, settings: Settings, job: JobRecord,
           inline: dict[str, bytes] | None = None) -> JobRecord:
    """Store a new job and queue it in RQ, or put it in its tenant's backlog when the tenant
    has its most active jobs (or older ones waiting). Raises quota.QuotaExceeded when its
    inline data would take the tenant past settings.max_tenant_bytes."""
    k, tenant = store.keys, job.tenant

    def write(pipe) -> JobRecord:
        quota.check(pipe, k, tenant, job.data_bytes, settings.max_tenant_bytes,
                    "the job's inline data", "data.X")
        admit = (not pipe.llen(k.tenant_backlog(tenant))
                 and pipe.scard(k.tenant_active(tenant)) < settings.max_active_jobs_per_tenant)
        stored = job.model_copy(update={
            "backlogged": not admit,
            "rq_id": queues.rq_job_id(job.id, job.attempt) if admit else None})
        pipe.multi()
        store.put_job(pipe, stored, inline)
        if admit:
            pipe.sadd(k.tenant_active(tenant), job.id)
            queues.enqueue_training(store.r, settings, job.id, job.device, job.attempt,
                                    job.timeout_s, pipeline=pipe)
        else:
            pipe.rpush(k.tenant_backlog(tenant), job.id)
            pipe.sadd(k.backlogged_tenants(), tenant)
        return stored

    return store.transact(write, k.tenant_bytes(tenant), k.tenant_active(tenant),
                          k.tenant_backlog(tenant))


def finish(store: Store, settings: Settings, job_id: str, status: JobStatus, owner: Owner,
           model: tuple[dict, bytes] | None = None, **fields: Any) -> JobRecord | None:
    """End job `job_id` in `status` if `owner` still holds it, in one transaction: the final
    fields, the model (meta, weights) if any, the end event, expiry of its keys after
    settings.result_ttl_s, its inline data freed, its slot freed and the oldest backlogged
    jobs of its tenant promoted into RQ. Returns the job as it was, or None (not owned: nothing
    written)."""
    k = store.keys

    def write(pipe) -> JobRecord | None:
        job = store.job(None, job_id, reader=pipe)
        if not owner.holds(job):
            return None
        tenant = job.tenant
        pipe.watch(k.tenant_active(tenant), k.tenant_backlog(tenant))
        promoted = waiting_to_promote(store, settings, pipe, tenant, leaving={job_id})
        pipe.multi()
        store.set_status(pipe, job, status, finished_at=time.time(), backlogged=False, **fields)
        pipe.delete(k.job_lease(job_id), k.job_checkpoint(job_id), k.job_data(job_id))
        for key in (k.job(job_id), k.job_history(job_id)):
            pipe.expire(key, settings.result_ttl_s)
        pipe.hincrby(k.counters(), f"jobs_{status.value}", 1)
        pipe.publish(k.job_events(job_id), json.dumps({"event": "end", "status": status.value}))
        quota.charge(pipe, k, tenant, -job.data_bytes)
        if model is not None:
            store.put_model(*model, pipe=pipe)
        pipe.srem(k.tenant_active(tenant), job_id)
        pipe.lrem(k.tenant_backlog(tenant), 0, job_id)
        promote(store, settings, pipe, tenant, promoted)
        return job

    return store.transact(write, k.job(job_id))


def waiting_to_promote(store: Store, settings: Settings, pipe: redis.client.Pipeline,
                       tenant: str, leaving: set[str]) -> list[JobRecord | str]:
    """Read (under WATCH of the tenant's active set and backlog) which backlogged jobs get the
    free slots, the jobs in `leaving` not counted as active: records to promote, or ids of
    entries to drop (gone, ended, or not backlogged any more)."""
    k = store.keys
    active = {i.decode() for i in pipe.smembers(k.tenant_active(tenant))} - leaving
    free = settings.max_active_jobs_per_tenant - len(active)
    if free <= 0:
        return []
    chosen: list[JobRecord | str] = []
    for raw_id in pipe.lrange(k.tenant_backlog(tenant), 0, free):
        job_id = raw_id.decode()
        job = None if job_id in leaving else store.job(None, job_id, reader=pipe)
        usable = job is not None and job.status == JobStatus.QUEUED and job.backlogged
        chosen.append(job if usable else job_id)
        if sum(isinstance(c, JobRecord) for c in chosen) == free:
            break
    return chosen


def promote(store: Store, settings: Settings, pipe: redis.client.Pipeline, tenant: str,
            chosen: list[JobRecord | str]) -> list[str]:
    """Queue (inside the open MULTI) what waiting_to_promote chose; returns the promoted ids."""
    k = store.keys
    promoted = []
    for item in chosen:
        job_id = item.id if isinstance(item, JobRecord) else item
        pipe.lrem(k.tenant_backlog(tenant), 0, job_id)
        if isinstance(item, JobRecord):
            pipe.sadd(k.tenant_active(tenant), job_id)
            store.update_job(pipe, job_id, backlogged=False,
                             rq_id=queues.rq_job_id(job_id, item.attempt))
            queues.enqueue_training(store.r, settings, job_id, item.device, item.attempt,
                                    item.timeout_s, pipeline=pipe)
            promoted.append(job_id)
    return promoted


def promote_waiting(store: Store, settings: Settings) -> list[str]:
    """The reaper's pass: promote what waits in every tenant's backlog into its free slots.
    Returns the promoted ids."""
    return [job_id for raw in store.r.smembers(store.keys.backlogged_tenants())
            for job_id in promote_tenant(store, settings, raw.decode())]


def promote_tenant(store: Store, settings: Settings, tenant: str) -> list[str]:
    """One transaction: drop the tenant's active entries of jobs that are gone or ended, fill
    the free slots from its backlog, and forget the tenant once its backlog is empty."""
    k = store.keys

    def write(pipe) -> list[str]:
        stale = {i.decode() for i in pipe.smembers(k.tenant_active(tenant))
                 if (job := store.job(None, i.decode(), reader=pipe)) is None or job.finished}
        chosen = waiting_to_promote(store, settings, pipe, tenant, leaving=stale)
        empty = pipe.llen(k.tenant_backlog(tenant)) <= len(chosen)  # all leave it
        pipe.multi()
        if stale:
            pipe.srem(k.tenant_active(tenant), *stale)
        if empty:
            pipe.srem(k.backlogged_tenants(), tenant)
        return promote(store, settings, pipe, tenant, chosen)

    return store.transact(write, k.tenant_active(tenant), k.tenant_backlog(tenant))


def backlog_positions(store: Store, jobs: list[JobRecord]) -> dict[str, int]:
    """Place in its tenant's backlog (1 = promoted next) of each backlogged job, by id."""
    waiting = [job for job in jobs if job.backlogged]
    if not waiting:
        return {}
    pipe = store.r.pipeline(transaction=False)
    for job in waiting:
        pipe.lpos(store.keys.tenant_backlog(job.tenant), job.id)
    return {job.id: int(found) + 1 for job, found in zip(waiting, pipe.execute())
            if found is not None}
