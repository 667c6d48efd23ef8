"""Moving a sweep on: one pass of core.asha's plan, written in one transaction.

`advance` runs whenever something happens to a sweep: the API after creating or canceling it,
a worker after one of its trials paused at a rung or ended, and the reaper on every sweep
still running (what a crash between a trial's end and its pass left undone). There is no
coordinator process: a pass reads the sweep and its trials' jobs, decides, and writes, WATCHing
the sweep (every write bumps its version), the paused trials it may resume and its tenant's
slots, so two passes never both act on what they read.

Fair share: a sweep keeps at most `parallel` trials (default: the live workers of its queue)
queued or running, and queues them at the back of RQ's queue. Another tenant's job queued
meanwhile is taken by the next worker that a trial frees at its rung: it waits about one
rung's time, whatever the sweep's size.
"""

from __future__ import annotations

import logging
import time

from core import asha, fairness, queues, sweeps
from core.records import JobRecord, JobStatus, Owner
from core.settings import Settings
from core.store import Store
from core.sweeps import SweepRecord, SweepStatus

log = logging.getLogger("backprop.sweeps")
MAX_PASSES = 20


def slots(store: Store, settings: Settings, sweep: SweepRecord) -> int:
    if sweep.parallel:
        return sweep.parallel
    return max(queues.workers_serving(store.r, settings, (sweep.queue,))[sweep.queue], 1)


def advance(store: Store, settings: Settings, sweep_id: str) -> SweepRecord | None:
    """Run passes until one changes nothing that needs another (a stop can finish a rung)."""
    sweep = None
    for _ in range(MAX_PASSES):
        sweep, again = _pass(store, settings, sweep_id)
        if not again:
            break
    return sweep


def _pass(store: Store, settings: Settings, sweep_id: str) -> tuple[SweepRecord | None, bool]:
    k = store.keys
    tenant = sweeps.tenant_of(store, sweep_id)
    if tenant is None:
        store.r.srem(k.sweeps_running(), sweep_id)
        return None, False
    current = sweeps.get(store, None, sweep_id)
    width = slots(store, settings, current) if current and not current.finished else 1

    def write(pipe):
        sweep = sweeps.get(store, None, sweep_id, reader=pipe)
        if sweep is None or sweep.finished:
            return sweep, None
        jobs = sweeps.trial_jobs(store, sweep)
        paused = [i for i, job in jobs.items() if job.status == JobStatus.PAUSED]
        if paused:  # read again under WATCH: these are the jobs this pass may resume
            pipe.watch(*(k.job(jobs[i].id) for i in paused))
            for i in paused:
                raw = pipe.hgetall(k.job(jobs[i].id))
                if raw:
                    jobs[i] = JobRecord.decode(raw)
                else:
                    del jobs[i]
        _, slots = fairness.read_after_watch(store, settings, tenant)
        plan = asha.plan(sweep, jobs, width, time.time())
        trials = [t.model_copy(deep=True) for t in sweep.trials]
        for i, reached in plan.rung_metrics.items():
            trials[i].rungs = reached
        for i in plan.stop:
            trials[i].stopped = True
        for i in plan.skip:
            trials[i].skipped = True
        pipe.multi()
        for i, pause_at in plan.promote:
            job = jobs[i]
            fairness.enter(store, settings, pipe, job, slots,
                           attempt=job.attempt + 1, pause_at=pause_at)
        for i, pause_at in plan.release:
            job = JobRecord.model_validate({**trials[i].job, "sweep_id": sweep.id,
                                            "pause_at": pause_at, "tenant": sweep.tenant})
            store.put_job(pipe, job)
            fairness.enter(store, settings, pipe, job, slots)
            trials[i].job_id = job.id
        fields = {"trials": trials}
        if plan.done:
            canceled = sweep.cancel_requested
            fields.update(status=SweepStatus.CANCELED if canceled else SweepStatus.SUCCEEDED,
                          finished_at=time.time(), best=sweeps.best_of(sweep, jobs))
            pipe.srem(k.sweeps_running(), sweep.id)
        pipe.hset(k.sweep(sweep.id), mapping=SweepRecord.encode_fields(**fields))
        pipe.hincrby(k.sweep(sweep.id), "version", 1)
        return sweep.model_copy(update=fields), (plan, jobs)

    sweep, decided = store.transact(write, k.sweep(sweep_id),
                                    *fairness.watched(store, settings, tenant))
    if decided is None:
        return sweep, False
    plan, jobs = decided
    for i in plan.stop:
        job = jobs[i]
        fairness.finish(store, settings, job.id, tenant, JobStatus.CANCELED,
                        Owner(job.attempt, JobStatus.PAUSED),
                        error={"message": stop_reason(sweep), "epoch": job.epoch})
    for i in plan.cancel:
        cancel_job(store, settings, jobs[i])
    if plan.promote or plan.release or plan.stop:
        log.info("sweep %s: promoted %s, started %s, stopped %s", sweep.id,
                 [i for i, _ in plan.promote], [i for i, _ in plan.release], plan.stop,
                 extra={"tenant": tenant})
    return sweep, bool(plan.stop)


def stop_reason(sweep: SweepRecord) -> str:
    if sweep.cancel_requested:
        return f"sweep {sweep.id} was canceled"
    if sweep.deadline is not None and time.time() >= sweep.deadline:
        return f"sweep {sweep.id} reached its max_runtime_s of {sweep.max_runtime_s:g} s"
    return (f"stopped by sweep {sweep.id}: not in the top 1/{sweep.reduction_factor} of its "
            f"rung (its checkpoint is freed)")


def cancel_job(store: Store, settings: Settings, job: JobRecord) -> None:
    """What POST /v1/jobs/{id}/cancel does: flag it; end it here if it is still waiting
    (never started) or paused, else its worker stops within an epoch."""
    store.request_cancel(job.id)
    if job.status == JobStatus.PAUSED:
        fairness.finish(store, settings, job.id, job.tenant, JobStatus.CANCELED,
                        Owner(job.attempt, JobStatus.PAUSED))
    elif job.status == JobStatus.QUEUED and store.checkpoint(job.id) is None and (
            job.backlogged or queues.take_back_queued(store.r, settings, job.device,
                                                      job.rq_id)):
        fairness.finish(store, settings, job.id, job.tenant, JobStatus.CANCELED,
                        Owner(job.attempt, JobStatus.QUEUED))


def advance_all(store: Store, settings: Settings) -> int:
    """The reaper's pass over every sweep still running; returns how many it advanced."""
    count = 0
    for sweep_id in sweeps.running_ids(store):
        try:
            advance(store, settings, sweep_id)
            count += 1
        except Exception:  # one broken sweep must not stop the others' passes
            log.exception("advancing sweep %s failed", sweep_id)
    return count
