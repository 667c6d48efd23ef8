"""Finds running jobs whose worker died (lease expired) and resumes them from their checkpoint.

Runs as a thread in every worker process; a short Redis lock lets one sweep at a time. The
hand-over is one transaction with the lease (worker.attempts.hand_on): a worker that was only
slow, and renews its lease first, keeps its job; one that renews too late finds the job handed
on and stops without writing.
"""

from __future__ import annotations

import logging
import threading

from worker.attempts import hand_on
from worker.settings import Settings
from worker.status import JobStatus
from worker.store import Store

log = logging.getLogger("backprop.reaper")


def lost(meta: dict, lease_alive: bool) -> bool:
    """A running job without a lease: its worker died (or lost Redis for longer than the lease)."""
    return not lease_alive and meta.get("status") == JobStatus.RUNNING.value


def sweep(store: Store, settings: Settings) -> list[str]:
    """One pass: requeue (or fail, past max_restarts) every running job without a lease."""
    touched = []
    for job_id in store.running_job_ids():
        if store.lease_alive(job_id):
            continue
        meta = store.job(None, job_id)
        if meta is None or meta.get("status") != JobStatus.RUNNING.value:
            store.r.srem(store.keys.running_jobs(), job_id)
            continue
        if int(meta.get("restarts") or 0) + 1 > settings.max_restarts:
            if give_up(store, settings, job_id):
                touched.append(job_id)
            continue
        resumed = hand_on(store, settings, job_id, lambda m, alive: {
            "restarts": int(m.get("restarts") or 0) + 1} if lost(m, alive) else None)
        if resumed is not None:
            log.warning("job %s lost its worker; resuming from epoch %s (restart %d)", job_id,
                        resumed.get("checkpoint_epoch", 0), int(resumed.get("restarts") or 0) + 1,
                        extra={"job_id": job_id})
            touched.append(job_id)
    return touched


def give_up(store: Store, settings: Settings, job_id: str) -> bool:
    """Fail a job that lost its worker once more than settings.max_restarts allows."""
    taken = hand_on(store, settings, job_id, lambda m, alive: {} if lost(m, alive) else None,
                    requeue=False)
    if taken is None:
        return False
    losses = int(taken.get("restarts") or 0) + 1
    store.finish_job(job_id, JobStatus.FAILED, settings.result_ttl_s,
                     error={"message": f"the job lost its worker {losses} times (killed or out "
                                       f"of memory); giving up after BACKPROP_MAX_RESTARTS="
                                       f"{settings.max_restarts}", "epoch": taken.get("epoch")})
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
