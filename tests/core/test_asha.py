"""ASHA's decisions (core.asha.plan) on made-up trial states: pure, no Redis."""

from __future__ import annotations

from core.asha import default_min_epochs, plan, rungs
from core.records import JobRecord, JobStatus
from core.sweeps import SweepRecord, Trial


def sweep(n: int, strategy: str = "asha", **fields) -> SweepRecord:
    return SweepRecord(tenant="t", dataset_id="ds", strategy=strategy, max_epochs=27,
                       min_epochs=3, rungs=rungs(3, 27, 3) if strategy == "asha" else [],
                       trials=[Trial(index=i, params={}, job={}) for i in range(n)], **fields)


def job(status: JobStatus, epoch: int = 0, metric: float | None = None) -> JobRecord:
    return JobRecord(tenant="t", network={}, training={}, timeout_s=60, epochs=27,
                     status=status, epoch=epoch, metrics={"val_metric": metric})


def started(s: SweepRecord, jobs: dict[int, JobRecord]) -> SweepRecord:
    for i in jobs:
        s.trials[i].job_id = f"job{i}"
    return s


def test_rungs():
    assert rungs(3, 27, 3) == [3, 9]
    assert rungs(1, 10, 3) == [1, 3, 9]
    assert rungs(27, 27, 3) == []


def test_the_default_first_rung_puts_no_rung_just_below_max_epochs():
    assert [default_min_epochs(m, 3) for m in (27, 9, 200, 5)] == [3, 1, 23, 1]
    assert rungs(default_min_epochs(200, 3), 200, 3) == [23, 69]        # not [22, 66, 198]
    assert rungs(default_min_epochs(27, 3), 27, 3) == [3, 9]


def test_new_trials_fill_the_free_slots_and_pause_at_the_first_rung():
    p = plan(sweep(12), {}, slots=2, now=0)
    assert p.release == [(0, 3), (1, 3)] and not p.promote and not p.done
    r = plan(sweep(4, "random"), {}, slots=3, now=0)
    assert r.release == [(0, None), (1, None), (2, None)]


def test_the_top_third_of_a_rung_is_promoted_without_waiting_for_it_to_fill():
    jobs = {0: job(JobStatus.PAUSED, 3, 0.5), 1: job(JobStatus.PAUSED, 3, 0.9),
            2: job(JobStatus.PAUSED, 3, 0.7)}
    p = plan(started(sweep(12), jobs), jobs, slots=2, now=0)
    assert p.promote == [(1, 9)]          # 3 results: the best one goes on to rung 9
    assert p.release == [(3, 3)]          # and a new trial takes the other slot
    assert p.stop == []                   # 9 trials may still beat trials 0 and 2
    assert p.rung_metrics[1] == {3: 0.9}


def test_a_final_rung_stops_the_rest_and_its_best_always_goes_on():
    jobs = {0: job(JobStatus.PAUSED, 3, 0.5), 1: job(JobStatus.PAUSED, 3, 0.9)}
    p = plan(started(sweep(2), jobs), jobs, slots=2, now=0)
    assert p.promote == [(1, 9)] and p.stop == [0] and not p.done


def test_a_sweep_is_done_when_nothing_is_open():
    jobs = {0: job(JobStatus.SUCCEEDED, 27, 0.9), 1: job(JobStatus.CANCELED, 3, 0.1)}
    s = started(sweep(2), jobs)
    s.trials[1].stopped = True
    assert plan(s, jobs, slots=2, now=0).done


def test_cancel_stops_paused_skips_pending_and_cancels_running():
    jobs = {0: job(JobStatus.PAUSED, 3, 0.5), 1: job(JobStatus.RUNNING, 5)}
    p = plan(started(sweep(4, cancel_requested=True), jobs), jobs, slots=2, now=0)
    assert p.stop == [0] and p.skip == [2, 3] and p.cancel == [1] and not p.done
    late = plan(started(sweep(4, max_runtime_s=10, created_at=0), jobs), jobs, slots=2, now=11)
    assert late.stop == [0] and late.skip == [2, 3] and late.cancel == []
