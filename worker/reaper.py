"""Finds running jobs whose worker died (lease expired) and resumes them from their checkpoint.

Runs as a thread in every worker process; a short Redis lock lets one sweep at a time.
"""

from __future__ import annotations

import logging
import threading

from worker import queues
from worker.settings import Settings
from worker.status import JobStatus
from worker.store import Store

log = logging.getLogger("backprop.reaper")


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
        restarts = int(meta.get("restarts", 0)) + 1
        if restarts > settings.max_restarts:
            store.finish_job(job_id, JobStatus.FAILED, settings.result_ttl_s, restarts=restarts - 1,
                             error={"message": f"the job lost its worker {restarts} times (killed or "
                                               f"out of memory); giving up after "
                                               f"BACKPROP_MAX_RESTARTS={settings.max_restarts}",
                                    "epoch": meta.get("epoch")})
            log.warning("job %s failed: too many lost workers", job_id, extra={"job_id": job_id})
        else:
            attempt = int(meta.get("attempt", 1)) + 1
            store.update_job(job_id, status=JobStatus.QUEUED.value, restarts=restarts,
                             attempt=attempt, rq_id=queues.rq_job_id(job_id, attempt))
            queues.enqueue_training(store.r, settings, job_id, meta.get("device", "cpu"), attempt,
                                    queues.remaining_timeout(meta), at_front=True)
            log.warning("job %s lost its worker; resuming from epoch %s (restart %d)", job_id,
                        meta.get("checkpoint_epoch", 0), restarts, extra={"job_id": job_id})
        touched.append(job_id)
    return touched


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
