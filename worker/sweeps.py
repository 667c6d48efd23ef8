"""A worker's side of a sweep: park a trial at its rung, and let the sweep decide what next.

When a trial reaches its rung (job.pause_at), its run checkpoints it and parks it as `paused`
(core.fairness.pause, fenced by the attempt like every write of a run); the worker then runs
the sweep's scheduler pass (core.sweep_scheduler.advance), which promotes, stops or starts
trials. The same pass runs after a trial ends. Nothing waits for a rung to fill: the worker is
free for its next job as soon as the pass is written.
"""

from __future__ import annotations

import logging

from core import fairness, sweep_scheduler
from core.settings import Settings
from core.store import Store
from worker.attempts import Attempt, AttemptLost, patiently

log = logging.getLogger("backprop.worker")


def pause(store: Store, settings: Settings, attempt: Attempt, data: bytes, epoch: int) -> None:
    """Checkpoint the trial after `epoch` epochs and park it (AttemptLost: not ours any more)."""
    if fairness.pause(store, settings, attempt.job_id, attempt.tenant, attempt.owner,
                      also=lambda pipe: attempt._write_checkpoint(pipe, data, epoch),
                      epoch=epoch) is None:
        raise AttemptLost(f"attempt {attempt.number} no longer owns the job")


def after_trial(store: Store, settings: Settings, sweep_id: str) -> None:
    """The sweep's pass after one of its trials paused or ended. A failure here loses
    nothing: the reaper runs the pass for every running sweep."""
    try:
        patiently(lambda: sweep_scheduler.advance(store, settings, sweep_id),
                  "advancing the sweep", give_up_s=30)
    except Exception:
        log.exception("advancing sweep %s failed; the reaper will retry", sweep_id)

