"""Job ownership against the session's real Valkey: a handed-on attempt writes nothing more,
epoch appends are idempotent and contiguous, the reaper resumes or gives up.

The jobs here go to a queue no worker listens on, under their own key prefix, so the session's
workers never pick them up.
"""

import secrets

import pytest

from core import queues
from core.records import JobStatus
from core.store import Store
from tests.service.helpers import job_record, private_settings, started, submitted
from worker.attempts import AttemptLost
from worker.reaper import sweep


@pytest.fixture()
def settings(service_env):
    return private_settings(f"t-attempts-{secrets.token_hex(4)}", max_restarts=1)


def record(epoch: int) -> dict:
    return {"epoch": epoch, "loss": 1.0 / epoch}


def recorded(store: Store, job_id: str) -> list[int]:
    return [e["epoch"] for e in store.history(job_id)]


def snapshot(store: Store, settings) -> dict:
    """Every key under the test's prefix (serialized value and whether it expires) and the
    queue's RQ job ids: what must not change when a lost attempt tries to write."""
    keys = sorted(store.r.scan_iter(match=f"{settings.key_prefix}:*"))
    return {"keys": {key: (store.r.dump(key), store.r.ttl(key) > 0) for key in keys},
            "queue": queues.queue_for(store.r, settings, "cpu").job_ids}


def every_write_is_refused(attempt, store, settings) -> None:
    """Each write an attempt can make raises AttemptLost and changes nothing in Redis."""
    before = snapshot(store, settings)
    writes = {
        "renew": attempt.renew,
        "append_epoch": lambda: attempt.append_epoch(record(9), epoch=9),
        "rewind": lambda: attempt.rewind(0),
        "checkpoint": lambda: attempt.checkpoint(b"stale weights", 9),
        "requeue": lambda: attempt.requeue(b"stale weights", 9),
        "fail": lambda: attempt.finish(JobStatus.FAILED, error={"message": "stale"}),
        "finish with a model": lambda: attempt.finish(
            JobStatus.SUCCEEDED, ({"id": "mdl_stale", "tenant": "t", "created_at": 1.0},
                                  b"stale model"), model_id="mdl_stale"),
        "start": lambda: attempt.start(worker="stale"),
    }
    for name, write in writes.items():
        with pytest.raises(AttemptLost):
            write()
        assert snapshot(store, settings) == before, f"{name} by a lost attempt changed Redis"


def test_appends_are_idempotent_contiguous_and_carry_the_cancel_flag(store, settings):
    job = submitted(store, settings)
    attempt = started(store, settings, job)
    assert store.job(None, job.id).status == JobStatus.RUNNING and store.lease_alive(job.id)
    assert attempt.append_epoch(record(1), epoch=1) is False
    assert attempt.append_epoch(record(1), epoch=1) is False  # a retry: not recorded twice
    assert recorded(store, job.id) == [1]
    with pytest.raises(AttemptLost, match="epochs before 3 are missing"):
        attempt.append_epoch(record(3), epoch=3)
    store.request_cancel(job.id)
    assert attempt.append_epoch(record(2), epoch=2) is True
    assert attempt.renew() is True
    assert recorded(store, job.id) == [1, 2] and store.job(None, job.id).epoch == 2


def test_reaped_attempt_writes_nothing_more_and_the_next_one_resumes(store, settings):
    job = submitted(store, settings)
    first = started(store, settings, job)
    for epoch in (1, 2, 3):
        first.append_epoch(record(epoch), epoch=epoch)
    first.checkpoint(b"weights at epoch 2", 2)
    assert sweep(store, settings) == []  # the lease is alive: the worker is fine
    store.r.delete(store.keys.job_lease(job.id))  # as if w1 died and its lease ran out

    assert sweep(store, settings) == [job.id]
    handed_on = store.job(None, job.id)
    assert (handed_on.status, handed_on.attempt, handed_on.restarts) == (JobStatus.QUEUED, 2, 1)
    assert queues.queue_for(store.r, settings, "cpu").job_ids == [f"{job.id}-a2"]
    every_write_is_refused(first, store, settings)  # while the job waits for attempt 2
    assert not store.lease_alive(job.id), "a lost attempt must not take its lease back"

    second = started(store, settings, handed_on, worker="w2")
    second.rewind(2)  # resumes from the checkpoint: epoch 3 is trained again
    second.append_epoch(record(3), epoch=3)
    second.checkpoint(b"weights at epoch 3", 3)
    every_write_is_refused(first, store, settings)  # while attempt 2 trains it
    assert recorded(store, job.id) == [1, 2, 3]
    assert store.checkpoint(job.id) == b"weights at epoch 3"
    second.finish(JobStatus.SUCCEEDED, model_id=None)
    assert store.job(None, job.id).status == JobStatus.SUCCEEDED


def test_graceful_requeue_writes_its_checkpoint_and_hands_on_in_one_step(store, settings):
    job = submitted(store, settings)
    attempt = started(store, settings, job)
    attempt.append_epoch(record(1), epoch=1)
    attempt.requeue(b"weights at epoch 1", 1)
    queued = store.job(None, job.id)
    assert (queued.status, queued.attempt, queued.restarts) == (JobStatus.QUEUED, 2, 0)
    assert (store.checkpoint(job.id), queued.checkpoint_epoch) == (b"weights at epoch 1", 1)
    assert queues.queue_for(store.r, settings, "cpu").job_ids == [f"{job.id}-a2"]
    every_write_is_refused(attempt, store, settings)


def test_reaper_gives_up_after_max_restarts_and_the_last_attempt_is_locked_out(store,
                                                                               settings):
    job = submitted(store, settings, job_record(restarts=1))  # max_restarts 1: one loss more
    attempt = started(store, settings, job)
    attempt.append_epoch(record(1), epoch=1)
    store.r.delete(store.keys.job_lease(job.id))

    assert sweep(store, settings) == [job.id]
    failed = store.job(None, job.id)
    assert failed.status == JobStatus.FAILED and failed.error.epoch == 1
    assert "lost its worker 2 times" in failed.error.message
    assert "BACKPROP_MAX_RESTARTS=1" in failed.error.message
    assert queues.queue_for(store.r, settings, "cpu").count == 0
    every_write_is_refused(attempt, store, settings)
    assert recorded(store, job.id) == [1]


def test_an_attempt_whose_job_was_deleted_writes_nothing(store, settings):
    """The reaper failed the job, its owner deleted it, then the cut-off worker comes back:
    no key comes back to life (no checkpoint, no model, no bytes counted)."""
    job = submitted(store, settings, job_record(restarts=1))
    attempt = started(store, settings, job)
    store.r.delete(store.keys.job_lease(job.id))
    assert sweep(store, settings) == [job.id]
    assert store.delete_job(job.tenant, job.id)
    assert store.job(None, job.id) is None
    every_write_is_refused(attempt, store, settings)
    assert store.tenant_bytes(job.tenant) == 0
