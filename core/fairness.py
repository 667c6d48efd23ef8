"""A job's entry and exit, and the per-tenant limits that keep one tenant from filling the queues.

A tenant has at most settings.max_active_jobs_per_tenant jobs that are *active*: in an RQ queue
or running (the set keys.tenant_active), and of those at most settings.max_queued_jobs_per_tenant
*waiting* in each RQ queue, not yet started (keys.tenant_waiting). Its further jobs wait, still
`queued`, in its backlog (the list keys.tenant_backlog, oldest first), not in RQ; the next goes
in as one of its jobs starts or ends. So workers, which take jobs from RQ in order, take
tenants' jobs in turn: another tenant's job waits behind at most max_queued_jobs_per_tenant of
a tenant's jobs plus those running, not behind its whole backlog.

Each step is one transaction: `submit` stores a job and queues it or backlogs it; `started`
(inside the worker's start) and `finish` promote the oldest backlogged jobs that have room into
RQ. `promote_waiting` (run by the reaper) promotes what a crash, a raised limit or a job of a
busy queue left waiting, and drops entries of jobs that are gone or ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from core import queues, quota
from core.records import JobRecord, JobStatus, ModelRecord, Owner
from core.settings import Settings
from core.store import Store

SETTING = "BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT"
QUEUED_SETTING = "BACKPROP_MAX_QUEUED_JOBS_PER_TENANT"
BACKLOG_SETTING = "BACKPROP_MAX_BACKLOG_PER_TENANT"
# Finished jobs' keys also expire this long after the reaper should have deleted them: a net
# for a service whose reaper never runs again (the quota counter is then left as it was).
EXPIRY_GRACE_S = 24 * 3600


class BacklogFull(Exception):
    """The tenant has settings.max_backlog_per_tenant jobs waiting already (the API: 429)."""


@dataclass
class Slots:
    """A tenant's place in the workers' queues, as read under WATCH (read_after_watch), and
    updated as a transaction queues its jobs."""

    active: set[str]             # its jobs in an RQ queue or running
    backlog: list[str]           # the head of its backlog, oldest first
    waiting: dict[str, set[str]]  # RQ queue name -> its jobs in that queue, not yet started

    def room(self, settings: Settings, queue: str) -> bool:
        """Whether one more of the tenant's jobs may go into RQ queue `queue`."""
        return (len(self.active) < settings.max_active_jobs_per_tenant
                and len(self.waiting[queue]) < settings.max_queued_jobs_per_tenant)

    def take(self, job_id: str, queue: str) -> None:
        self.active.add(job_id)
        self.waiting[queue].add(job_id)

    def leave(self, job_id: str) -> None:
        """Job `job_id` starts (leaves its queue) or ends (leaves the slots too)."""
        for ids in self.waiting.values():
            ids.discard(job_id)


def watched(store: Store, settings: Settings, tenant: str) -> tuple[str, ...]:
    """The keys that a transaction moving the tenant's jobs in or out of RQ WATCHes."""
    k = store.keys
    return (k.tenant_active(tenant), k.tenant_backlog(tenant),
            *(k.tenant_waiting(tenant, queue) for queue in queue_names(settings)))


def queue_names(settings: Settings) -> tuple[str, ...]:
    return tuple(dict.fromkeys(queues.queue_name(settings, d) for d in ("cpu", "gpu")))


def queue_of(settings: Settings, job: JobRecord) -> str:
    return queues.queue_name(settings, job.device)


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
        _, slots = read_after_watch(store, settings, tenant)
        quota.check(store.r, k, tenant, adding, settings.max_tenant_bytes, what,
                    "data.X" if job.data_bytes else "network")
        admit = not slots.backlog and slots.room(settings, queue_of(settings, job))
        waiting = 0 if admit else store.r.llen(k.tenant_backlog(tenant))
        if waiting >= settings.max_backlog_per_tenant:
            raise BacklogFull(
                f"tenant {tenant!r} has {waiting} jobs waiting in its backlog, its most "
                f"({BACKLOG_SETTING}={settings.max_backlog_per_tenant}); submit again once "
                f"some have started, or cancel waiting ones (POST /v1/jobs/{{id}}/cancel)")
        quota.check_room(store.r, adding, settings.redis_reserve_bytes, what, "network")
        stored = job.model_copy(update={
            "backlogged": not admit,
            "rq_id": queues.rq_job_id(job.id, job.attempt) if admit else None})
        pipe.multi()
        store.put_job(pipe, stored, inline)
        if admit:
            queue_into_rq(store, settings, pipe, job, job.attempt)
        else:
            pipe.rpush(k.tenant_backlog(tenant), job.id)
            pipe.sadd(k.backlogged_tenants(), tenant)
        return stored

    return store.transact(write, k.tenant_bytes(tenant), *watched(store, settings, tenant))


def queue_into_rq(store: Store, settings: Settings, pipe: redis.client.Pipeline,
                  job: JobRecord, attempt: int) -> None:
    """Inside an open MULTI: job `job` (attempt `attempt`) into its RQ queue, at the back, and
    into its tenant's active and waiting sets."""
    k = store.keys
    pipe.sadd(k.tenant_active(job.tenant), job.id)
    pipe.sadd(k.tenant_waiting(job.tenant, queue_of(settings, job)), job.id)
    queues.enqueue_training(store.r, settings, job.id, job.device, attempt, job.timeout_s,
                            pipeline=pipe)


def finish(store: Store, settings: Settings, job_id: str, tenant: str, status: JobStatus,
           owner: Owner, model: tuple[ModelRecord, bytes] | None = None,
           **fields: Any) -> JobRecord | None:
    """End job `job_id` of `tenant` in `status` if `owner` still holds it, in one transaction
    (leave): the final fields, the model (record, weights) if any, the end event, expiry of its
    keys after settings.result_ttl_s, its inline data freed, its slot freed and the oldest
    backlogged jobs of its tenant promoted into RQ. Returns the job as it was, or None (not
    owned: nothing written)."""
    k = store.keys

    def end(pipe, job: JobRecord) -> None:
        checkpoint = store.r.strlen(k.job_checkpoint(job_id))  # only its attempt writes it
        now = time.time()
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

    return leave(store, settings, job_id, tenant, owner, end)


def leave(store: Store, settings: Settings, job_id: str, tenant: str, owner: Owner,
          writes: Callable[[redis.client.Pipeline, JobRecord], None]) -> JobRecord | None:
    """One transaction, if `owner` still holds job `job_id`: writes(pipe, job) inside the
    MULTI, then the job leaves its tenant's active and waiting sets and backlog, and the oldest
    backlogged jobs that now have room go into RQ (finish, pause). Returns the job as it was,
    or None (not owned: nothing written)."""
    k = store.keys

    def write(pipe) -> JobRecord | None:
        raw, slots = read_after_watch(store, settings, tenant, job_id)
        job = JobRecord.decode(raw) if raw else None
        if not owner.holds(job):
            return None
        chosen = waiting_to_promote(store, settings, slots, job_id)
        pipe.multi()
        writes(pipe, job)
        pipe.srem(k.tenant_active(tenant), job_id)
        for queue in queue_names(settings):
            pipe.srem(k.tenant_waiting(tenant, queue), job_id)
        pipe.lrem(k.tenant_backlog(tenant), 0, job_id)
        promote(store, settings, pipe, tenant, chosen)
        return job

    return store.transact(write, k.job(job_id), *watched(store, settings, tenant))


def started(store: Store, settings: Settings, pipe: redis.client.Pipeline,
            job: JobRecord) -> Callable[[], list[str]]:
    """Inside a worker's start transaction (worker.attempts.Attempt.start), read under WATCH
    of `watched` keys, before pipe.multi(): job `job` leaves its queue's waiting set, and the
    oldest backlogged jobs of its tenant that now have room go into RQ. Returns a function to
    call after pipe.multi() that queues those writes."""
    _, slots = read_after_watch(store, settings, job.tenant)
    slots.leave(job.id)
    chosen = waiting_to_promote(store, settings, slots)

    def write() -> list[str]:
        pipe.srem(store.keys.tenant_waiting(job.tenant, queue_of(settings, job)), job.id)
        return promote(store, settings, pipe, job.tenant, chosen)

    return write


def read_after_watch(store: Store, settings: Settings, tenant: str,
                     job_id: str | None = None) -> tuple[dict, Slots]:
    """(the job's hash if job_id, the tenant's Slots) in one round trip on another
    connection: read after the transaction's WATCH of them (`watched`), so a change to any
    before its EXEC makes it run again."""
    k = store.keys
    names = queue_names(settings)
    reads = store.r.pipeline(transaction=False)
    if job_id is not None:
        reads.hgetall(k.job(job_id))
    reads.smembers(k.tenant_active(tenant))
    # The backlog's head: enough to fill every free slot, past jobs of a queue with no room.
    reads.lrange(k.tenant_backlog(tenant), 0, 2 * settings.max_active_jobs_per_tenant)
    for queue in names:
        reads.smembers(k.tenant_waiting(tenant, queue))
    answers = reads.execute()
    raw = answers.pop(0) if job_id is not None else {}
    active, backlog, *waiting = answers
    return raw, Slots({i.decode() for i in active}, [i.decode() for i in backlog],
                      {queue: {i.decode() for i in ids} for queue, ids in zip(names, waiting)})


PROMOTE_BATCH = 4
"""Backlogged records read per round trip while a queue has room (one or two promotions fit,
BACKPROP_MAX_QUEUED_JOBS_PER_TENANT being 1), not the backlog's whole head each time."""


def waiting_to_promote(store: Store, settings: Settings, slots: Slots,
                       leaving: str | None = None) -> list[JobRecord | str]:
    """Which backlogged jobs go into RQ, oldest first, given `slots` (read under WATCH; job
    `leaving` ends, so it leaves them): records to promote (taken into `slots`), or ids of
    entries to drop (gone, ended, leaving, or not backlogged any more). A job whose queue has
    no room stays, and a younger one of another queue may pass it."""
    if leaving is not None:
        slots.active.discard(leaving)
        slots.leave(leaving)
    chosen: list[JobRecord | str] = []
    for start in range(0, len(slots.backlog), PROMOTE_BATCH):
        if not any(slots.room(settings, queue) for queue in queue_names(settings)):
            break
        reads = store.r.pipeline(transaction=False)
        for job_id in slots.backlog[start:start + PROMOTE_BATCH]:
            reads.hgetall(store.keys.job(job_id))
        for job_id, raw in zip(slots.backlog[start:], reads.execute()):
            job = JobRecord.decode(raw) if raw and job_id != leaving else None
            if job is None or job.status != JobStatus.QUEUED or not job.backlogged:
                chosen.append(job_id)
            elif slots.room(settings, queue_of(settings, job)):
                slots.take(job.id, queue_of(settings, job))
                chosen.append(job)
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
            store.update_job(pipe, job_id, backlogged=False,
                             rq_id=queues.rq_job_id(job_id, item.attempt))
            queue_into_rq(store, settings, pipe, item, item.attempt)
            promoted.append(job_id)
    return promoted


def promote_waiting(store: Store, settings: Settings) -> list[str]:
    """The reaper's pass: promote what waits in every tenant's backlog into its free slots.
    Returns the promoted ids."""
    return [job_id for raw in store.r.smembers(store.keys.backlogged_tenants())
            for job_id in promote_tenant(store, settings, raw.decode())]


def promote_tenant(store: Store, settings: Settings, tenant: str) -> list[str]:
    """One transaction: drop the tenant's active and waiting entries of jobs that are gone,
    ended or (waiting) started, fill the free slots from its backlog, and forget the tenant
    once its backlog is empty."""
    k = store.keys

    def write(pipe) -> list[str]:
        _, slots = read_after_watch(store, settings, tenant)
        listed = list(slots.active | set().union(*slots.waiting.values()))
        reads = store.r.pipeline(transaction=False)
        for job_id in listed:
            reads.hget(k.job(job_id), "status")
        statuses = {job_id: JobRecord.decode_field("status", raw) if raw else None
                    for job_id, raw in zip(listed, reads.execute())}
        stale = {job_id for job_id, status in statuses.items()
                 if status is None or status.finished}
        slots.active -= stale
        not_waiting = {job_id for job_id in listed if statuses[job_id] != JobStatus.QUEUED}
        for ids in slots.waiting.values():
            ids -= not_waiting
        chosen = waiting_to_promote(store, settings, slots)
        empty = pipe.llen(k.tenant_backlog(tenant)) <= len(chosen)  # all leave it
        pipe.multi()
        if stale:
            pipe.srem(k.tenant_active(tenant), *stale)
        for queue in queue_names(settings):
            if not_waiting:
                pipe.srem(k.tenant_waiting(tenant, queue), *not_waiting)
        if empty:
            pipe.srem(k.backlogged_tenants(), tenant)
        return promote(store, settings, pipe, tenant, chosen)

    return store.transact(write, *watched(store, settings, tenant))


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
          slots: Slots, **fields: Any) -> bool:
    """Inside an open MULTI: make stored job `job` queued (with `fields`) and put it in RQ, at
    the back, when its tenant has room (`slots` as read under WATCH, updated here) and nothing
    backlogged; else at the back of its backlog. What a sweep does to start or resume a
    trial. Returns whether it went into RQ."""
    k, tenant = store.keys, job.tenant
    queue = queue_of(settings, job)
    admit = not slots.backlog and slots.room(settings, queue)
    attempt = fields.get("attempt", job.attempt)
    store.set_status(pipe, job, JobStatus.QUEUED, backlogged=not admit,
                     rq_id=queues.rq_job_id(job.id, attempt) if admit else None, **fields)
    if admit:
        slots.take(job.id, queue)
        queue_into_rq(store, settings, pipe, job, attempt)
    else:
        slots.backlog.append(job.id)
        pipe.rpush(k.tenant_backlog(tenant), job.id)
        pipe.sadd(k.backlogged_tenants(), tenant)
    return admit


def pause(store: Store, settings: Settings, job_id: str, tenant: str, owner: Owner,
          also=None, **fields: Any) -> JobRecord | None:
    """Park job `job_id` (a sweep's trial at a rung) as `paused` if `owner` still holds it, in
    one transaction (leave): its lease dropped, `also(pipe)` (its checkpoint), its active slot
    freed and the oldest backlogged jobs of its tenant promoted into RQ. It stays in no queue
    until its sweep resumes it (enter) or ends it (finish). Returns the job as it was, or None."""
    k = store.keys

    def park(pipe, job: JobRecord) -> None:
        store.set_status(pipe, job, JobStatus.PAUSED, backlogged=False, **fields)
        pipe.delete(k.job_lease(job_id))
        if also is not None:
            also(pipe)
        pipe.publish(k.job_events(job_id), json.dumps({"event": "paused",
                                                       "epoch": fields.get("epoch")}))

    return leave(store, settings, job_id, tenant, owner, park)
