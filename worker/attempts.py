"""Which attempt owns a job, checked in Redis on every write a training attempt makes.

A job is trained by attempts (the first run, then resumes after a lost worker or a shutdown),
each its own RQ job. The job's `attempt` field names the one that owns it. The reaper or a
graceful shutdown hands the job to the next attempt in one transaction; an attempt that finds
its job handed on stops without writing anything more (AttemptLost), so two workers never
train one job. Epoch appends are idempotent and contiguous: a retry after a dropped connection
never records an epoch twice, and an attempt never writes past a hole Redis lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from core import fairness, queues, quota
from core.records import JobRecord, JobStatus, ModelRecord, Owner
from core.settings import Settings
from core.store import Store

log = logging.getLogger("backprop.worker")
T = TypeVar("T")

# Redis errors that mean "not reachable right now" (restart, failover, network blip).
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
# How often a write waiting for a full Valkey says so in the log.
FULL_LOG_EVERY_S = 30.0


class StoreStillFull(Exception):
    """Valkey stayed at its maxmemory longer than settings.store_full_wait_s: the attempt
    stops without writing, its lease lapses, and the reaper resumes the job from its
    checkpoint once Valkey takes writes again."""
CANCEL_FLAG = JobRecord.encode_fields(cancel_requested=True)["cancel_requested"]

# Both scripts first check that the job is this attempt's and running (KEYS[1] the job hash;
# ARGV[1] the attempt, ARGV[2] the running status, both as the record encodes them).
# KEYS: job hash, lease. ARGV: attempt, running, cancel flag, holder, lease ms.
# Returns -1 when the job is no longer this attempt's, else 1/0: cancel requested or not.
# A lease still held is extended with PEXPIRE, which a Valkey at maxmemory still takes (SET it
# refuses): a job waiting for room keeps its lease, so it is not handed to another worker.
# (No shebang: a legacy script runs when the server is full, refusing only its SET.)
RENEW_LEASE = """
local f = redis.call('HMGET', KEYS[1], 'attempt', 'status', 'cancel_requested')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then return -1 end
if redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
else
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
end
if f[3] == ARGV[3] then return 1 end
return 0
"""

# KEYS: job hash, history list, counters hash, tenant bytes. ARGV: attempt, running, cancel
# flag, epoch, record line, events channel, event, then field/value pairs for the job hash.
# Returns -1: not this attempt's job; -2: epochs before this one are missing; else 1/0 (cancel).
# The line's bytes are charged to the job (stored_bytes) and its tenant, out of the job's
# reservation first (core.quota.use_reservation). The shebang makes a full Valkey refuse the
# whole script before it starts, so it never stops half-way (line pushed, charge not made).
APPEND_EPOCH = """#!lua
local f = redis.call('HMGET', KEYS[1], 'attempt', 'status', 'cancel_requested',
                     'reserved_bytes')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then return -1 end
local recorded = redis.call('LLEN', KEYS[2])
local epoch = tonumber(ARGV[4])
if recorded < epoch - 1 then return -2 end
if recorded == epoch - 1 then
  redis.call('RPUSH', KEYS[2], ARGV[5])
  local size = string.len(ARGV[5])
  local taken = math.min(size, math.max(tonumber(f[4] or '0') or 0, 0))
  redis.call('HINCRBY', KEYS[1], 'stored_bytes', size)
  if taken > 0 then redis.call('HINCRBY', KEYS[1], 'reserved_bytes', -taken) end
  if size > taken then redis.call('INCRBY', KEYS[4], size - taken) end
  if #ARGV > 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 8)) end
  redis.call('HINCRBY', KEYS[3], 'epochs_trained', 1)
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
if f[3] == ARGV[3] then return 1 end
return 0
"""


class AttemptLost(Exception):
    """The job is no longer this attempt's to write (handed on, finished or deleted)."""


class Attempt:
    """One attempt's hold on a job. Every write it makes (start, rewind, lease, epoch,
    checkpoint, requeue, finish) checks in its own transaction or script that the attempt
    still owns the job, and raises AttemptLost, having written nothing, when it does not."""

    def __init__(self, store: Store, settings: Settings, job: JobRecord, holder: str):
        self.store, self.settings, self.holder = store, settings, holder
        self.job_id, self.tenant, self.number = job.id, job.tenant, job.attempt
        self.owner = Owner(job.attempt, JobStatus.RUNNING)
        self.lease_ms = int(settings.lease_s * 1000)
        fence = JobRecord.encode_fields(attempt=job.attempt, status=JobStatus.RUNNING)
        self._fence = [fence["attempt"], fence["status"]]
        self._renew = store.r.register_script(RENEW_LEASE)
        self._append = store.r.register_script(APPEND_EPOCH)

    def _lost(self, job: JobRecord | None) -> AttemptLost:
        state = "deleted" if job is None else f"{job.status.value}, attempt {job.attempt}"
        return AttemptLost(f"attempt {self.number} found the job {state}")

    def _owned(self, pipe, status: JobStatus = JobStatus.RUNNING) -> JobRecord:
        """The job, read inside the transaction; AttemptLost unless this attempt owns it."""
        job = self.store.job(None, self.job_id, reader=pipe)
        if not Owner(self.number, status).holds(job):
            raise self._lost(job)
        return job

    def start(self, **fields: Any) -> JobRecord:
        """queued -> running with a lease, only if the job is still queued for this attempt;
        the next backlogged jobs of its tenant go into RQ (core.fairness.started).

        Returns the job as it was; raises AttemptLost when it is not this attempt's to run
        (canceled while its RQ job was being picked up, or already handed on)."""
        k = self.store.keys

        def write(pipe) -> JobRecord:
            job = self._owned(pipe, JobStatus.QUEUED)
            queue_next = fairness.started(self.store, self.settings, pipe, job)
            pipe.multi()
            pipe.set(k.job_lease(self.job_id), self.holder, px=self.lease_ms)
            self.store.set_status(pipe, job, JobStatus.RUNNING, **fields)
            queue_next()
            return job

        return self.store.transact(write, k.job(self.job_id),
                                   *fairness.watched(self.store, self.settings, self.tenant))

    def rewind(self, epochs: int) -> None:
        """Keep the first `epochs` epochs of the history (those the checkpoint holds): the
        epochs after it will be trained again, and recorded again."""
        k = self.store.keys

        def write(pipe) -> None:
            job = self._owned(pipe)
            # The dropped lines' bytes go back to the tenant (read after the WATCH: only this
            # attempt appends to the history).
            dropped = sum(map(len, self.store.r.lrange(k.job_history(self.job_id),
                                                        max(epochs, 0), -1)))
            pipe.multi()
            if epochs <= 0:
                pipe.delete(k.job_history(self.job_id))
            else:
                pipe.ltrim(k.job_history(self.job_id), 0, epochs - 1)
            self.store.update_job(pipe, self.job_id, epoch=epochs,
                                  stored_bytes=job.stored_bytes - dropped)
            quota.charge(pipe, k, self.tenant, -dropped)

        self.store.transact(write, k.job(self.job_id))

    def renew(self) -> bool:
        """Extend the lease; returns whether a cancel was requested."""
        k = self.store.keys
        answer = self._renew(keys=[k.job(self.job_id), k.job_lease(self.job_id)],
                             args=[*self._fence, CANCEL_FLAG, self.holder, self.lease_ms])
        if answer == -1:
            raise AttemptLost(f"attempt {self.number} no longer owns the job")
        return answer == 1

    def append_epoch(self, record: dict, **fields: Any) -> bool:
        """Record epoch record["epoch"] once; returns whether a cancel was requested."""
        k = self.store.keys
        line = json.dumps(record)
        pairs = [item for pair in JobRecord.encode_fields(**fields).items() for item in pair]
        answer = self._append(
            keys=[k.job(self.job_id), k.job_history(self.job_id), k.counters(),
                  k.tenant_bytes(self.tenant)],
            args=[*self._fence, CANCEL_FLAG, record["epoch"], line, k.job_events(self.job_id),
                  f'{{"event": "epoch", "record": {line}}}', *pairs])
        if answer == -1:
            raise AttemptLost(f"attempt {self.number} no longer owns the job")
        if answer == -2:
            raise AttemptLost(f"epochs before {record['epoch']} are missing from the history "
                              f"(Redis lost writes); resuming from the last checkpoint")
        return answer == 1

    def checkpoint(self, data: bytes, epoch: int) -> None:
        """Store the network's state after `epoch` epochs."""
        def write(pipe) -> None:
            job = self._owned(pipe)
            fields = self._checkpoint_charge(job, data)
            pipe.multi()
            self._write_checkpoint(pipe, data, epoch, **fields)

        self.store.transact(write, self.store.keys.job(self.job_id))

    def _checkpoint_charge(self, job: JobRecord, data: bytes) -> dict:
        """The job's byte fields after replacing its checkpoint with `data` (read after the
        WATCH of the job: only this attempt writes its checkpoint), and the tenant's change."""
        old = self.store.r.strlen(self.store.keys.job_checkpoint(self.job_id))
        taken, charged = quota.use_reservation(len(data) - old, job.reserved_bytes)
        return {"stored_bytes": job.stored_bytes + len(data) - old,
                "reserved_bytes": job.reserved_bytes - taken, "tenant_delta": charged}

    def _write_checkpoint(self, pipe, data: bytes, epoch: int, tenant_delta: int = 0,
                          **fields: Any) -> None:
        pipe.set(self.store.keys.job_checkpoint(self.job_id), data)
        self.store.update_job(pipe, self.job_id, checkpoint_epoch=epoch,
                              checkpoint_at=time.time(), **fields)
        quota.charge(pipe, self.store.keys, self.tenant, tenant_delta)

    def requeue(self, data: bytes, epoch: int) -> None:
        """Checkpoint and put the job back at the front of its queue for a next attempt (a
        graceful shutdown), both only if this attempt still owns the job."""
        charge: dict = {}

        def decide(job: JobRecord, alive: bool) -> dict | None:
            if not self.owner.holds(job):
                return None
            charge.clear()
            charge.update(self._checkpoint_charge(job, data))
            return {}

        taken = hand_on(self.store, self.settings, self.job_id, decide,
                        also=lambda pipe: self._write_checkpoint(pipe, data, epoch, **charge))
        if taken is None:
            raise AttemptLost(f"attempt {self.number} no longer owns the job")

    def finish(self, status: JobStatus, model: tuple[ModelRecord, bytes] | None = None,
               owner: Owner | None = None, **fields: Any) -> None:
        """End the job (with its model, if any): core.fairness.finish, fenced by this
        attempt (or `owner`: a queued job this attempt cancels before starting it)."""
        if fairness.finish(self.store, self.settings, self.job_id, self.tenant, status,
                           owner or self.owner, model, **fields) is None:
            raise AttemptLost(f"attempt {self.number} no longer owns the job")


def hand_on(store: Store, settings: Settings, job_id: str,
            decide: Callable[[JobRecord, bool], dict | None], requeue: bool = True,
            also: Callable[[redis.client.Pipeline], None] | None = None) -> JobRecord | None:
    """Give job `job_id` to a new attempt at the front of its queue, in one transaction.

    decide(job, lease_alive) returns extra job fields to set, or None to leave the job alone;
    it sees the job as it is inside the transaction (WATCHed with its lease), so a lease renewed
    meanwhile, or another hand-on, makes this one retry with fresh data. With requeue=False the
    job is only taken from its attempt (which can then write nothing), not queued: what comes
    before failing it. `also(pipe)` adds writes to the transaction. Returns the job as it was
    when handed on, or None.
    """
    k = store.keys

    def write(pipe) -> JobRecord | None:
        job = store.job(None, job_id, reader=pipe)
        fields = None if job is None else decide(job, bool(pipe.exists(k.job_lease(job_id))))
        if fields is None:
            return None
        attempt = job.attempt + 1
        pipe.multi()
        pipe.delete(k.job_lease(job_id))
        if also is not None:
            also(pipe)
        if not requeue:
            store.update_job(pipe, job_id, attempt=attempt, **fields)
            return job
        store.set_status(pipe, job, JobStatus.QUEUED, attempt=attempt,
                         rq_id=queues.rq_job_id(job_id, attempt), **fields)
        queues.enqueue_training(store.r, settings, job_id, job.device, attempt,
                                job.remaining_timeout(), at_front=True, pipeline=pipe)
        return job

    return store.transact(write, k.job(job_id), k.job_lease(job_id))


def patiently(action: Callable[[], T], what: str, give_up_s: float | None = None,
              full_wait_s: float | None = None) -> T:
    """Run action(), retrying while Redis is unreachable (a restart): a training run waits for
    Redis rather than failing. give_up_s bounds the wait (re-raising the last error).

    With full_wait_s, a write that a full Valkey refuses (at its maxmemory) is retried too,
    with a warning every FULL_LOG_EVERY_S, for up to full_wait_s seconds; then StoreStillFull.
    Without it, the refusal is raised at once."""
    delay, waited_since, full_since, full_logged = 0.05, None, None, 0.0
    while True:
        try:
            return action()
        except UNREACHABLE as exc:
            now = time.monotonic()
            if waited_since is None:
                waited_since = now
                log.warning("Redis unreachable while %s (%s); waiting for it", what, exc)
            elif give_up_s is not None and now - waited_since > give_up_s:
                raise
        except redis.OutOfMemoryError as exc:
            if full_wait_s is None:
                raise
            now = time.monotonic()
            full_since = now if full_since is None else full_since
            if now - full_since > full_wait_s:
                raise StoreStillFull(f"Redis stayed full for {now - full_since:.0f} s while "
                                     f"{what} (BACKPROP_STORE_FULL_WAIT_S={full_wait_s:g})"
                                     ) from exc
            if now - full_logged >= FULL_LOG_EVERY_S:
                full_logged = now
                log.warning("Redis is full (maxmemory) while %s; retrying for up to %.0f s "
                            "more", what, full_wait_s - (now - full_since))
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
