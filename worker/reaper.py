"""Finds running jobs whose worker died (lease expired) and resumes them from their checkpoint.

Runs as a thread in every worker process; a short Redis lock lets one sweep at a time. The
hand-over is one transaction with the lease (worker.attempts.hand_on): a worker that was only
slow, and renews its lease first, keeps its job; one that renews too late finds the job handed
on and stops without writing. Each sweep also promotes backlogged jobs whose promotion a crash
or a raised limit left undone (core.fairness.promote_waiting).
"""

from __future__ import annotations

import logging
import threading

from core import fairness, sweep_scheduler
from core.records import JobRecord, JobStatus, Owner
from core.settings import Settings
from core.store import Store
from worker.attempts import hand_on

log = logging.getLogger("backprop.reaper")


def lost(job: JobRecord, lease_alive: bool) -> bool:
    """A running job without a lease: its worker died (or lost Redis for longer than the lease)."""
    return not lease_alive and job.status == JobStatus.RUNNING


def sweep(store: Store, settings: Settings) -> list[str]:
    """One pass: requeue (or fail, past max_restarts) every running job without a lease,
    promote backlogged jobs into free slots, and delete finished jobs past their time to live
    (giving their bytes back to their tenants). Returns the ids of the jobs it moved."""
    touched = []
    for job_id in store.running_job_ids():
        if store.lease_alive(job_id):
            continue
        job = store.job(None, job_id)
        if job is None or job.status != JobStatus.RUNNING:
            store.r.srem(store.keys.running_jobs(), job_id)
            continue
        if job.restarts + 1 > settings.max_restarts:
            if give_up(store, settings, job_id):
                touched.append(job_id)
            continue
        resumed = hand_on(store, settings, job_id, lambda j, alive: {
            "restarts": j.restarts + 1} if lost(j, alive) else None)
        if resumed is not None:
            log.warning("job %s lost its worker; resuming from epoch %s (restart %d)", job_id,
                        resumed.checkpoint_epoch or 0, resumed.restarts + 1,
                        extra={"job_id": job_id})
            touched.append(job_id)
    promoted = fairness.promote_waiting(store, settings)
    if promoted:
        log.warning("promoted %d backlogged job(s) whose promotion was left undone",
                    len(promoted))
    expired = fairness.expire_finished(store)
    if expired:
        log.info("deleted %d finished job(s) past BACKPROP_RESULT_TTL_S", len(expired))
    sweep_scheduler.advance_all(store, settings)  # what a crash left a sweep undone
    return touched + promoted


def give_up(store: Store, settings: Settings, job_id: str) -> bool:
    """Fail a job that lost its worker once more than settings.max_restarts allows."""
    taken = hand_on(store, settings, job_id, lambda j, alive: {} if lost(j, alive) else None,
                    requeue=False)
    if taken is None:
        return False
    losses = taken.restarts + 1
    fairness.finish(store, settings, job_id, taken.tenant, JobStatus.FAILED,
                    Owner(taken.attempt + 1),
                    error={"message": f"the job lost its worker {losses} times (killed or out "
                                      f"of memory); giving up after BACKPROP_MAX_RESTARTS="
                                      f"{settings.max_restarts}", "epoch": taken.epoch})
    log.warning("job %s failed: too many lost workers", job_id, extra={"job_id": job_id})
    return True


class Reaper(threading.Thread):
    """Sweeps every lease_s / 4 seconds until stopped."""

    def __init__(self, store: Store, settings: Settings):
        super().__init__(name="backprop-reaper", daemon=True)
        self.store, self.settings = store, settings
        self.stopping = threading.Event()
        self.interval = max(settings.lease_s / 4, 0.5)

    def run(self) -> None:
        lock_ms = int(self.interval * 1000)
        while not self.stopping.wait(self.interval):
            try:
                if self.store.r.set(self.store.keys.reaper_lock(), "1", nx=True, px=lock_ms):
                    sweep(self.store, self.settings)
            except Exception:  # Redis restarting: sweep again next time
                log.warning("reaper sweep failed", exc_info=True)

    def stop(self) -> None:
        self.stopping.set()
