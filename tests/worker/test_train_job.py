"""worker.jobs.train called directly (it takes only a job id), against the session's Valkey."""

import numpy as np
import pytest

from core import queues
from core.records import JobStatus
from core.settings import get_settings
from core.store import Store
import engine
from tests.service.helpers import job_record, private_settings, private_store, started, submitted
from worker.attempts import hand_on
from worker.jobs import train

NETWORK = {"layers": [{"units": 6, "activation": "tanh"}, {"units": 2, "activation": "softmax"}],
           "loss": "cross_entropy"}
TRAINING = {"optimizer": "momentum", "learning_rate": 0.1, "epochs": 8, "batch_size": 16,
            "seed": 3}


@pytest.fixture()
def settings(service_env):
    """The session's key prefix (train() reads get_settings()), but a queue nobody serves."""
    return private_settings(get_settings().key_prefix)


@pytest.fixture()
def store(settings):
    store = private_store(settings)
    yield store
    queues.queue_for(store.r, settings, "cpu").empty()


def make_job(store: Store, settings, X, y, **fields):
    return submitted(store, settings, job_record(
        "t-direct", 8, network=NETWORK, training=TRAINING, dtype="float64", seed=5,
        preprocessing="none", **fields),  # the engine trains on X as it is in the resume test
        inline=(X, y))


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


def test_direct_call_trains_and_stores_the_model(store, settings):
    X, y = data()
    job_id = make_job(store, settings, X, y).id
    assert train(job_id) == "succeeded"
    job = store.job("t-direct", job_id)
    assert job.status == JobStatus.SUCCEEDED and job.epoch == 8
    assert [e["epoch"] for e in store.history(job_id)] == list(range(1, 9))
    model = store.model("t-direct", job.model_id)
    assert model.n_inputs == 3 and model.task == "classification"
    assert store.checkpoint(job_id) is None, "a finished job keeps no checkpoint"
    assert store.job_inline_data(job_id) is None, "nor its inline data"
    assert store.job("someone-else", job_id) is None


def test_resume_from_checkpoint_matches_an_uninterrupted_run(store, settings):
    X, y = data()
    straight = make_job(store, settings, X, y).id
    train(straight)

    resumed = make_job(store, settings, X, y)
    first = started(store, settings, resumed)
    net = engine.Network(NETWORK, n_inputs=3, seed=5, dtype="float64")
    records = []
    net.fit(X, y, {**TRAINING, "epochs": 3}, on_epoch=records.append)
    for record in records:
        first.append_epoch(record, epoch=record["epoch"])
    first.checkpoint(net.save_bytes(), net.epochs_done)
    # An epoch recorded after the checkpoint (the worker died before the next one) must be
    # trained again, not duplicated.
    first.append_epoch({**records[-1], "epoch": 4}, epoch=4)
    hand_on(store, settings, resumed.id, lambda job, alive: {"restarts": 1})

    assert train(resumed.id) == "succeeded"
    history = store.history(resumed.id)
    assert [e["epoch"] for e in history] == list(range(1, 9))
    assert [e["loss"] for e in history] == [e["loss"] for e in store.history(straight)]


def test_missing_dataset_fails_with_a_message(store, settings):
    job = submitted(store, settings, job_record("t-direct", 8, network=NETWORK,
                                                training=TRAINING, dataset_id="ds_gone"))
    assert train(job.id) == "failed"
    assert "ds_gone" in store.job(None, job.id).error.message
