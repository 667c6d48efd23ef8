"""What a sweep does next, worked out from its record and its trials' jobs. Pure: no Redis.

Asynchronous successive halving (ASHA; Li et al., MLSys 2020). Trials pause at rungs
(min_epochs, min_epochs * eta, ... below max_epochs). Whenever a trial reaches a rung or ends,
a pass promotes every paused trial that is in the top 1/eta of the results its rung has so far
(higher rungs first), then starts new trials in the slots left: no rung is waited for. A
trial is stopped once its rung can get no more results (no open trial is still below it) and
it is not in the top 1/eta; a rung's best trial always goes on, so at least one trial trains
to max_epochs. Random and grid sweeps only start trials, each trained to max_epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.records import JobRecord, JobStatus
from core.sweeps import SweepRecord, Trial, metric_of


def rungs(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """The epochs where ASHA trials pause: min_epochs * eta^k below max_epochs."""
    found, epoch = [], max(min_epochs, 1)
    while epoch < max_epochs:
        found.append(epoch)
        epoch *= eta
    return found


def default_min_epochs(max_epochs: int, eta: int) -> int:
    """The first rung when a sweep names none: max_epochs / eta^2 rounded up, so that the
    rungs are about max_epochs / eta^2 and max_epochs / eta (200 epochs: 23 and 69) and none
    sits just below max_epochs (rounding down, 22 would add a rung at 198)."""
    return max(1, -(-max_epochs // eta**2))


@dataclass
class Plan:
    promote: list[tuple[int, int | None]] = field(default_factory=list)  # (trial, pause_at)
    release: list[tuple[int, int | None]] = field(default_factory=list)  # (trial, pause_at)
    stop: list[int] = field(default_factory=list)       # paused trials to end
    skip: list[int] = field(default_factory=list)       # pending trials never to start
    cancel: list[int] = field(default_factory=list)     # active trials of a canceled sweep
    rung_metrics: dict[int, dict[int, float | None]] = field(default_factory=dict)
    done: bool = False


def state(trial: Trial, job: JobRecord | None) -> str:
    """pending | active | paused | closed, as the scheduler sees a trial."""
    if trial.skipped:
        return "closed"
    if trial.job_id is None:
        return "pending"
    if job is None or job.finished:
        return "closed"
    if job.status == JobStatus.PAUSED:
        return "paused"
    return "active"


def next_pause(sweep: SweepRecord, epoch: int) -> int | None:
    """The rung after `epoch` (None: train on to max_epochs)."""
    return next((r for r in sweep.rungs if r > epoch), None)


def plan(sweep: SweepRecord, jobs: dict[int, JobRecord], slots: int, now: float) -> Plan:
    """The next step of `sweep` given its trials' jobs (by trial index) and how many trials
    may be queued or running at once."""
    out = Plan()
    states = {t.index: state(t, jobs.get(t.index)) for t in sweep.trials}
    reached = {t.index: dict(t.rungs) for t in sweep.trials}
    for t in sweep.trials:  # a paused trial's metric at its rung, once
        job = jobs.get(t.index)
        if states[t.index] == "paused" and job.epoch in sweep.rungs \
                and job.epoch not in reached[t.index]:
            reached[t.index][job.epoch] = metric_of(sweep, job)
            out.rung_metrics[t.index] = reached[t.index]
    paused = {i for i, s in states.items() if s == "paused"}
    out.stop = sorted(i for i in paused if sweep.trials[i].stopped)  # a stop left undone
    paused -= set(out.stop)
    pending = sorted(i for i, s in states.items() if s == "pending")
    active = sum(s == "active" for s in states.values())
    closing = sweep.cancel_requested or (sweep.deadline is not None and now >= sweep.deadline)
    if closing:
        out.stop += sorted(paused)
        out.skip = pending
        if sweep.cancel_requested:
            out.cancel = sorted(i for i, s in states.items() if s == "active")
        out.done = active == 0 and not out.stop
        return out

    promotable: list[tuple[int, int | None]] = []
    if sweep.strategy == "asha":
        open_ = {i for i, s in states.items() if s != "closed"}
        for rung in reversed(sweep.rungs):
            results = [(reached[i][rung], i) for i in reached if rung in reached[i]]
            final = not any(max(reached[i], default=0) < rung for i in open_)
            top_n = len(results) // sweep.reduction_factor
            if final and results:
                top_n = max(top_n, 1)
            top = set(sweep.ranked(results)[:top_n])
            here = sorted(i for i in paused if jobs[i].epoch == rung)
            promotable += [(i, next_pause(sweep, rung)) for i in sweep.ranked(
                [(reached[i][rung], i) for i in here if i in top])]
            out.stop += [i for i in here if i not in top and final]
    free = max(slots - active, 0)
    out.promote = promotable[:free]
    free -= len(out.promote)
    first_pause = sweep.rungs[0] if sweep.strategy == "asha" and sweep.rungs else None
    out.release = [(i, first_pause) for i in pending[:free]]
    waiting = len(paused) - len(out.promote) - len(set(out.stop) & paused)
    # Stops are written after the pass: the sweep ends on the pass after them, so that a
    # crash in between leaves it running for the reaper to finish.
    out.done = (active == 0 and not out.promote and not out.release and waiting == 0
                and not pending and not out.stop)
    return out
