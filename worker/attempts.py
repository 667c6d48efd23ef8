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
from typing import Callable, TypeVar

import redis

from worker import queues
from worker.settings import Settings
from worker.status import JobStatus
from worker.store import Store, decode_meta, encode_meta

log = logging.getLogger("backprop.worker")
T = TypeVar("T")

# Redis errors that mean "not reachable right now" (restart, failover, network blip).
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
RUNNING = json.dumps(JobStatus.RUNNING.value)
CANCEL_FLAG = json.dumps(True)

# KEYS: job hash, lease. ARGV: attempt (JSON), holder, lease ms, running (JSON), cancel flag.
# Returns -1 when the job is no longer this attempt's, else 1/0: cancel requested or not.
RENEW_LEASE = """
local f = redis.call('HMGET', KEYS[1], 'attempt', 'status', 'cancel_requested')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[4] then return -1 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if f[3] == ARGV[5] then return 1 end
return 0
"""

# KEYS: job hash, history list, counters hash. ARGV: attempt (JSON), epoch, record line,
# events channel, event, cancel flag, then field/value pairs for the job hash.
# Returns -1: not this attempt's job; -2: epochs before this one are missing; else 1/0 (cancel).
APPEND_EPOCH = """
local f = redis.call('HMGET', KEYS[1], 'attempt', 'cancel_requested')
if f[1] ~= ARGV[1] then return -1 end
local recorded = redis.call('LLEN', KEYS[2])
local epoch = tonumber(ARGV[2])
if recorded < epoch - 1 then return -2 end
if recorded == epoch - 1 then
  redis.call('RPUSH', KEYS[2], ARGV[3])
  if #ARGV > 6 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
  redis.call('HINCRBY', KEYS[3], 'epochs_trained', 1)
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
if f[2] == ARGV[6] then return 1 end
return 0
"""


class AttemptLost(Exception):
    """The job is no longer this attempt's to write (handed on, finished or deleted)."""


class Attempt:
    """One attempt's hold on job `job_id`: start, lease renewal and epoch appends, all checked."""

    def __init__(self, store: Store, job_id: str, number: int, holder: str, lease_s: float):
        self.store, self.job_id, self.number, self.holder = store, job_id, number, holder
        self.lease_ms = int(lease_s * 1000)
        self._number = json.dumps(number)
        self._renew = store.r.register_script(RENEW_LEASE)
        self._append = store.r.register_script(APPEND_EPOCH)

    def start(self, **fields) -> dict:
        """queued -> running with a lease, only if the job is still queued for this attempt.

        Returns the job meta as it was; raises AttemptLost when it is not this attempt's to run
        (canceled while its RQ job was being picked up, or already handed on)."""
        k = self.store.keys
        with self.store.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(k.job(self.job_id))
                    raw = pipe.hgetall(k.job(self.job_id))
                    meta = decode_meta(raw) if raw else None
                    if meta is None or meta.get("status") != JobStatus.QUEUED.value or \
                            int(meta.get("attempt") or 1) != self.number:
                        state = "deleted" if meta is None else (
                            f"{meta.get('status')}, attempt {meta.get('attempt')}")
                        raise AttemptLost(f"attempt {self.number} found the job {state}")
                    pipe.multi()
                    pipe.set(k.job_lease(self.job_id), self.holder, px=self.lease_ms)
                    self.store.update_job(self.job_id, pipe, status=JobStatus.RUNNING.value,
                                          attempt=self.number, **fields)
                    pipe.execute()
                    return meta
                except redis.WatchError:
                    continue

    def rewind(self, epochs: int) -> None:
        """Keep the first `epochs` epochs of the history (those the checkpoint holds): the
        epochs after it will be trained again, and recorded again."""
        k = self.store.keys
        with self.store.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(k.job(self.job_id))
                    if pipe.hget(k.job(self.job_id), "attempt") != self._number.encode():
                        raise AttemptLost(f"attempt {self.number} no longer owns the job")
                    pipe.multi()
                    if epochs <= 0:
                        pipe.delete(k.job_history(self.job_id))
                    else:
                        pipe.ltrim(k.job_history(self.job_id), 0, epochs - 1)
                    self.store.update_job(self.job_id, pipe, epoch=epochs)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def renew(self) -> bool:
        """Extend the lease; returns whether a cancel was requested."""
        k = self.store.keys
        answer = self._renew(keys=[k.job(self.job_id), k.job_lease(self.job_id)],
                             args=[self._number, self.holder, self.lease_ms, RUNNING, CANCEL_FLAG])
        if answer == -1:
            raise AttemptLost(f"attempt {self.number} no longer owns the job")
        return answer == 1

    def append_epoch(self, record: dict, **fields) -> bool:
        """Record epoch record["epoch"] once; returns whether a cancel was requested."""
        k = self.store.keys
        line = json.dumps(record)
        pairs = [item for pair in encode_meta(fields).items() for item in pair]
        answer = self._append(
            keys=[k.job(self.job_id), k.job_history(self.job_id), k.counters()],
            args=[self._number, record["epoch"], line, k.job_events(self.job_id),
                  f'{{"event": "epoch", "record": {line}}}', CANCEL_FLAG, *pairs])
        if answer == -1:
            raise AttemptLost(f"attempt {self.number} no longer owns the job")
        if answer == -2:
            raise AttemptLost(f"epochs before {record['epoch']} are missing from the history "
                              f"(Redis lost writes); resuming from the last checkpoint")
        return answer == 1


def hand_on(store: Store, settings: Settings, job_id: str,
            decide: Callable[[dict, bool], dict | None], requeue: bool = True) -> dict | None:
    """Give job `job_id` to a new attempt at the front of its queue, in one transaction.

    decide(meta, lease_alive) returns extra job fields to set, or None to leave the job alone;
    it sees the job as it is inside the transaction (WATCHed with its lease), so a lease renewed
    meanwhile, or another hand-on, makes this one retry with fresh data. With requeue=False the
    job is only taken from its attempt (which can then write nothing), not queued: what comes
    before failing it. Returns the meta seen when the job was handed on.
    """
    k = store.keys
    with store.r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(k.job(job_id), k.job_lease(job_id))
                raw = pipe.hgetall(k.job(job_id))
                meta = decode_meta(raw) if raw else None
                fields = None if meta is None else decide(meta, bool(pipe.exists(
                    k.job_lease(job_id))))
                if fields is None:
                    pipe.unwatch()
                    return None
                attempt = int(meta.get("attempt") or 1) + 1
                pipe.multi()
                pipe.delete(k.job_lease(job_id))
                if not requeue:
                    store.update_job(job_id, pipe, attempt=attempt, **fields)
                    pipe.execute()
                    return meta
                store.update_job(job_id, pipe, status=JobStatus.QUEUED.value, attempt=attempt,
                                 rq_id=queues.rq_job_id(job_id, attempt), **fields)
                queues.enqueue_training(store.r, settings, job_id, meta.get("device", "cpu"),
                                        attempt, queues.remaining_timeout(meta),
                                        at_front=True, pipeline=pipe)
                pipe.execute()
                return meta
            except redis.WatchError:
                continue


def patiently(action: Callable[[], T], what: str, give_up_s: float | None = None) -> T:
    """Run action(), retrying while Redis is unreachable (a restart): a training run waits for
    Redis rather than failing. give_up_s bounds the wait (re-raising the last error)."""
    delay, waited_since = 0.05, None
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
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
