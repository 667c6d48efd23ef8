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

from core import queues, quota
from core.records import JobRecord, JobStatus, ModelRecord, Owner
from core.settings import Settings
from core.store import Store

SETTING = "BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT"
BACKLOG_SETTING = "BACKPROP_MAX_BACKLOG_PER_TENANT"
# Finished jobs' keys also expire this long after the reaper should have deleted them: a net
# for a service whose reaper never runs again (the quota counter is then left as it was).
EXPIRY_GRACE_S = 24 * 3600


class BacklogFull(Exception):
    """The tenant has settings.max_backlog_per_tenant jobs waiting already (the API: 429)."""


def charged_job(job: JobRecord) -> JobRecord:
    """`job` with its record's own bytes, and the allowance for what it gains later, in
    stored_bytes (what core.quota charges for a job until it is deleted)."""
    return job.model_copy(update={
        "stored_bytes": quota.hash_bytes(job.encode()) + quota.RECORD_ALLOWANCE})


def submit(store: Store, settings: Settings, job: JobRecord,
           inline: dict[str, bytes] | None = None) -> JobRecord:
    """Store a new job and queue it in RQ, or put it in its tenant's backlog when the tenant
    has its most active jobs (or older ones waiting). The job's record, inline data and
    reservation (job.reserved_bytes) are charged to its tenant in the same transaction.
    Raises quota.QuotaExceeded when they would take the tenant past
    settings.max_tenant_bytes, quota.StoreFull when Redis would come within
    settings.redis_reserve_bytes of its maxmemory, BacklogFull when the job would wait behind
    settings.max_backlog_per_tenant of its tenant's jobs."""
    k, tenant = store.keys, job.tenant
    job = charged_job(job)
    adding = job.data_bytes + job.stored_bytes + job.reserved_bytes
    what = ("this job's record, inline data and the model, checkpoint and history it will "
            "store" if job.data_bytes else
            "this job's record and the model, checkpoint and history it will store")

    def write(pipe) -> JobRecord:
        _, active, backlog = read_after_watch(store, settings, tenant)
        quota.check(store.r, k, tenant, adding, settings.max_tenant_bytes, what,
                    "data.X" if job.data_bytes else "network")
        admit = not backlog and len(active) < settings.max_active_jobs_per_tenant
        waiting = 0 if admit else store.r.llen(k.tenant_backlog(tenant))
        if waiting >= settings.max_backlog_per_tenant:
            raise BacklogFull(
                f"tenant {tenant!r} has {waiting} jobs waiting for one of its "
                f"{settings.max_active_jobs_per_tenant} active slots, its most "
                f"({BACKLOG_SETTING}={settings.max_backlog_per_tenant}); submit again once "
                f"some have started, or cancel waiting ones (POST /v1/jobs/{{id}}/cancel)")
        quota.check_room(store.r, adding, settings.redis_reserve_bytes, what, "network")
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


def finish(store: Store, settings: Settings, job_id: str, tenant: str, status: JobStatus,
           owner: Owner, model: tuple[ModelRecord, bytes] | None = None,
           **fields: Any) -> JobRecord | None:
    """End job `job_id` of `tenant` in `status` if `owner` still holds it, in one transaction:
    the final fields, the model (record, weights) if any, the end event, expiry of its keys after
    settings.result_ttl_s, its inline data freed, its slot freed and the oldest backlogged
    jobs of its tenant promoted into RQ. Returns the job as it was, or None (not owned: nothing
    written)."""
    k = store.keys

    def write(pipe) -> JobRecord | None:
        raw, active, backlog = read_after_watch(store, settings, tenant, job_id)
        job = JobRecord.decode(raw) if raw else None
        if not owner.holds(job):
            return None
        chosen = waiting_to_promote(store, settings, active - {job_id}, backlog, {job_id})
        checkpoint = store.r.strlen(k.job_checkpoint(job_id))  # only its attempt writes it
        now = time.time()
        pipe.multi()
        store.set_status(pipe, job, status, finished_at=now, backlogged=False,
                         stored_bytes=job.stored_bytes - checkpoint, reserved_bytes=0, **fields)
        pipe.delete(k.job_lease(job_id), k.job_checkpoint(job_id), k.job_data(job_id))
        # The reaper deletes it then, giving its bytes back (expire_finished).
        pipe.zadd(k.jobs_expiring(), {job_id: now + settings.result_ttl_s})
        for key in (k.job(job_id), k.job_history(job_id)):
            pipe.expire(key, settings.result_ttl_s + EXPIRY_GRACE_S)
        pipe.hincrby(k.counters(), f"jobs_{status.value}", 1)
        pipe.publish(k.job_events(job_id), json.dumps({"event": "end", "status": status.value}))
        # Its inline data, checkpoint and what is left of its reservation: the model (if any)
        # is charged as it is stored, its record and history until the job is deleted.
        quota.charge(pipe, k, tenant, -(job.data_bytes + checkpoint + job.reserved_bytes))
        if model is not None:
            store.put_model(*model, pipe=pipe)
        pipe.srem(k.tenant_active(tenant), job_id)
        pipe.lrem(k.tenant_backlog(tenant), 0, job_id)
        promote(store, settings, pipe, tenant, chosen)
        return job

    return store.transact(write, k.job(job_id), k.tenant_active(tenant),
                          k.tenant_backlog(tenant))


def read_after_watch(store: Store, settings: Settings, tenant: str,
                     job_id: str | None = None) -> tuple[dict, set[str], list[str]]:
    """(the job's hash if job_id, the tenant's active ids, the head of its backlog) in one
    round trip on another connection: read after the transaction's WATCH of them, so a change
    to any before its EXEC makes it run again."""
    k = store.keys
    reads = store.r.pipeline(transaction=False)
    if job_id is not None:
        reads.hgetall(k.job(job_id))
    reads.smembers(k.tenant_active(tenant))
    reads.lrange(k.tenant_backlog(tenant), 0, settings.max_active_jobs_per_tenant)
    *raw, active, backlog = reads.execute()
    return (raw[0] if raw else {}), {i.decode() for i in active}, [i.decode() for i in backlog]


def waiting_to_promote(store: Store, settings: Settings, active: set[str], backlog: list[str],
                       leaving: set[str]) -> list[JobRecord | str]:
    """Which backlogged jobs get the slots that `active` leaves free (read under WATCH):
    records to promote, or ids of entries to drop (gone, ended, leaving, or not backlogged
    any more). One round trip for the candidates' records."""
    free = settings.max_active_jobs_per_tenant - len(active)
    if free <= 0 or not backlog:
        return []
    reads = store.r.pipeline(transaction=False)
    for job_id in backlog:
        reads.hgetall(store.keys.job(job_id))
    chosen: list[JobRecord | str] = []
    for job_id, raw in zip(backlog, reads.execute()):
        job = JobRecord.decode(raw) if raw and job_id not in leaving else None
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
        _, active, backlog = read_after_watch(store, settings, tenant)
        reads = store.r.pipeline(transaction=False)
        for job_id in active:
            reads.hgetall(k.job(job_id))
        stale = {job_id for job_id, raw in zip(active, reads.execute())
                 if not raw or JobRecord.decode(raw).finished}
        chosen = waiting_to_promote(store, settings, active - stale, backlog, set())
        empty = pipe.llen(k.tenant_backlog(tenant)) <= len(chosen)  # all leave it
        pipe.multi()
        if stale:
            pipe.srem(k.tenant_active(tenant), *stale)
        if empty:
            pipe.srem(k.backlogged_tenants(), tenant)
        return promote(store, settings, pipe, tenant, chosen)

    return store.transact(write, k.tenant_active(tenant), k.tenant_backlog(tenant))


def expire_finished(store: Store, now: float | None = None, batch: int = 100) -> list[str]:
    """The reaper's pass: delete finished jobs whose result_ttl_s is over (their models stay),
    giving their record and history bytes back to their tenants. Returns the deleted ids."""
    k = store.keys
    due = [raw.decode() for raw in store.r.zrangebyscore(
        k.jobs_expiring(), "-inf", now if now is not None else time.time(), start=0, num=batch)]
    deleted = []
    for job_id in due:
        job = store.job(None, job_id)
        if job is not None and store.delete_job(job.tenant, job_id, with_model=False):
            deleted.append(job_id)
        else:  # gone already (deleted by its tenant) or not finished (cannot be)
            store.r.zrem(k.jobs_expiring(), job_id)
    return deleted


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


def backlog_length(store: Store) -> int:
    """Jobs waiting in every tenant's backlog (not yet in RQ's queues)."""
    tenants = [raw.decode() for raw in store.r.smembers(store.keys.backlogged_tenants())]
    pipe = store.r.pipeline(transaction=False)
    for tenant in tenants:
        pipe.llen(store.keys.tenant_backlog(tenant))
    return sum(pipe.execute()) if tenants else 0


def enter(store: Store, settings: Settings, pipe: redis.client.Pipeline, job: JobRecord,
          active: set[str], backlog: list[str], **fields: Any) -> bool:
    """Inside an open MULTI: make stored job `job` queued (with `fields`) and put it in RQ, at
    the back, when its tenant has a free active slot and nothing waiting (`active` and
    `backlog` as read under WATCH, updated here); else at the back of its backlog. What a
    sweep does to start or resume a trial. Returns whether it went into RQ."""
    k, tenant = store.keys, job.tenant
    admit = not backlog and len(active) < settings.max_active_jobs_per_tenant
    rq_id = queues.rq_job_id(job.id, fields.get("attempt", job.attempt))
    store.set_status(pipe, job, JobStatus.QUEUED, backlogged=not admit,
                     rq_id=rq_id if admit else None, **fields)
    if admit:
        active.add(job.id)
        pipe.sadd(k.tenant_active(tenant), job.id)
        queues.enqueue_training(store.r, settings, job.id, job.device,
                                fields.get("attempt", job.attempt), job.timeout_s,
                                pipeline=pipe)
    else:
        backlog.append(job.id)
        pipe.rpush(k.tenant_backlog(tenant), job.id)
        pipe.sadd(k.backlogged_tenants(), tenant)
    return admit


def pause(store: Store, settings: Settings, job_id: str, tenant: str, owner: Owner,
          also=None, **fields: Any) -> JobRecord | None:
    """Park job `job_id` (a sweep's trial at a rung) as `paused` if `owner` still holds it, in
    one transaction: its lease dropped, `also(pipe)` (its checkpoint), its active slot freed
    and the oldest backlogged jobs of its tenant promoted into RQ. It stays in no queue until
    its sweep resumes it (enter) or ends it (finish). Returns the job as it was, or None."""
    k = store.keys

    def write(pipe) -> JobRecord | None:
        raw, active, backlog = read_after_watch(store, settings, tenant, job_id)
        job = JobRecord.decode(raw) if raw else None
        if not owner.holds(job):
            return None
        chosen = waiting_to_promote(store, settings, active - {job_id}, backlog, {job_id})
        pipe.multi()
        store.set_status(pipe, job, JobStatus.PAUSED, backlogged=False, **fields)
        pipe.delete(k.job_lease(job_id))
        if also is not None:
            also(pipe)
        pipe.publish(k.job_events(job_id), json.dumps({"event": "paused",
                                                       "epoch": fields.get("epoch")}))
        pipe.srem(k.tenant_active(tenant), job_id)
        promote(store, settings, pipe, tenant, chosen)
        return job

    return store.transact(write, k.job(job_id), k.tenant_active(tenant),
                          k.tenant_backlog(tenant))
