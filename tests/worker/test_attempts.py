"""Job ownership against the session's real Valkey: a handed-on attempt writes nothing more,
epoch appends are idempotent and contiguous, the reaper resumes or gives up.

The jobs here go to a queue no worker listens on, under their own key prefix, so the session's
workers never pick them up.
"""

import secrets
import time

import pytest

from worker import queues
from worker.attempts import Attempt, AttemptLost
from worker.reaper import sweep
from worker.settings import Settings
from worker.status import new_id
from worker.store import Store


@pytest.fixture()
def settings(service_env):
    prefix = f"t-attempts-{secrets.token_hex(4)}"
    return Settings(key_prefix=prefix, queue=f"{prefix}-nobody-listens", max_restarts=1)


@pytest.fixture()
def store(settings):
    store = Store(queues.connect(settings), settings.key_prefix)
    yield store
    queues.queue_for(store.r, settings, "cpu").empty()
    for key in store.r.scan_iter(match=f"{settings.key_prefix}*"):
        store.r.delete(key)


def queued_job(store: Store) -> str:
    job_id = new_id("job")
    store.put_job({"id": job_id, "tenant": "t", "status": "queued", "device": "cpu",
                   "timeout_s": 60, "epochs": 10, "epoch": 0, "created_at": time.time(),
                   "started_at": time.time(), "attempt": 1, "restarts": 0})
    return job_id


def record(epoch: int) -> dict:
    return {"epoch": epoch, "loss": 1.0 / epoch}


def recorded(store: Store, job_id: str) -> list[int]:
    return [e["epoch"] for e in store.history(job_id)]


def test_appends_are_idempotent_contiguous_and_carry_the_cancel_flag(store):
    job_id = queued_job(store)
    attempt = Attempt(store, job_id, 1, "w1", lease_s=5)
    attempt.start(worker="w1")
    assert store.job(None, job_id)["status"] == "running" and store.lease_alive(job_id)
    assert attempt.append_epoch(record(1), epoch=1) is False
    assert attempt.append_epoch(record(1), epoch=1) is False  # a retry: not recorded twice
    assert recorded(store, job_id) == [1]
    with pytest.raises(AttemptLost, match="epochs before 3 are missing"):
        attempt.append_epoch(record(3), epoch=3)
    store.request_cancel(job_id)
    assert attempt.append_epoch(record(2), epoch=2) is True
    assert attempt.renew() is True
    assert recorded(store, job_id) == [1, 2] and store.job(None, job_id)["epoch"] == 2


def test_reaped_attempt_writes_nothing_more_and_the_next_one_resumes(store, settings):
    job_id = queued_job(store)
    first = Attempt(store, job_id, 1, "w1", lease_s=5)
    first.start(worker="w1")
    for epoch in (1, 2, 3):
        first.append_epoch(record(epoch), epoch=epoch)
    store.put_checkpoint(job_id, b"weights at epoch 2", 2)
    assert sweep(store, settings) == []  # the lease is alive: the worker is fine
    store.r.delete(store.keys.job_lease(job_id))  # as if w1 died and its lease ran out

    assert sweep(store, settings) == [job_id]
    meta = store.job(None, job_id)
    assert (meta["status"], meta["attempt"], meta["restarts"]) == ("queued", 2, 1)
    assert queues.queue_for(store.r, settings, "cpu").job_ids == [f"{job_id}-a2"]
    with pytest.raises(AttemptLost):
        first.renew()
    with pytest.raises(AttemptLost):
        first.append_epoch(record(4), epoch=4)
    assert not store.lease_alive(job_id), "a lost attempt must not take its lease back"

    second = Attempt(store, job_id, 2, "w2", lease_s=5)
    second.start(worker="w2")
    with pytest.raises(AttemptLost):
        first.start(worker="w1")  # a stale RQ job for attempt 1 does not run
    second.rewind(2)  # resumes from the checkpoint: epoch 3 is trained again
    second.append_epoch(record(3), epoch=3)
    assert recorded(store, job_id) == [1, 2, 3]


def test_reaper_gives_up_after_max_restarts_and_the_last_attempt_is_locked_out(store,
                                                                               settings):
    job_id = queued_job(store)
    store.update_job(job_id, restarts=1)  # settings.max_restarts is 1: this loss is one more
    attempt = Attempt(store, job_id, 1, "w1", lease_s=5)
    attempt.start(worker="w1")
    attempt.append_epoch(record(1), epoch=1)
    store.r.delete(store.keys.job_lease(job_id))

    assert sweep(store, settings) == [job_id]
    meta = store.job(None, job_id)
    assert meta["status"] == "failed" and meta["error"]["epoch"] == 1
    assert "lost its worker 2 times" in meta["error"]["message"]
    assert "BACKPROP_MAX_RESTARTS=1" in meta["error"]["message"]
    assert queues.queue_for(store.r, settings, "cpu").count == 0
    with pytest.raises(AttemptLost):
        attempt.append_epoch(record(2), epoch=2)
    assert recorded(store, job_id) == [1]
