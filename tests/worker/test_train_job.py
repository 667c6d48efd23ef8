"""worker.jobs.train called directly (it takes only a job id), against the session's Valkey."""

import time

import numpy as np
import pytest

import engine
from worker.jobs import train
from worker.settings import get_settings
from worker.status import new_id
from worker.store import Store
from worker.queues import connect

NETWORK = {"layers": [{"units": 6, "activation": "tanh"}, {"units": 2, "activation": "softmax"}],
           "loss": "cross_entropy"}
TRAINING = {"optimizer": "momentum", "learning_rate": 0.1, "epochs": 8, "batch_size": 16,
            "seed": 3}


@pytest.fixture()
def store(service_env):
    return Store(connect(get_settings()), get_settings().key_prefix)


def make_job(store: Store, X, y) -> str:
    job_id = new_id("job")
    store.put_job({"id": job_id, "tenant": "t-direct", "status": "queued", "network": NETWORK,
                   "training": TRAINING, "dataset_id": None, "device": "cpu",
                   "dtype": "float64", "seed": 5, "timeout_s": 60, "epochs": 8, "epoch": 0,
                   "created_at": time.time(), "attempt": 1, "restarts": 0,
                   "preprocessing": "none"}, (X, y))  # the engine trains on X as it is below
    return job_id


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


def test_direct_call_trains_and_stores_the_model(store):
    X, y = data()
    job_id = make_job(store, X, y)
    assert train(job_id) == "succeeded"
    meta = store.job("t-direct", job_id)
    assert meta["status"] == "succeeded" and meta["epoch"] == 8
    assert [e["epoch"] for e in store.history(job_id)] == list(range(1, 9))
    model = store.model("t-direct", meta["model_id"])
    assert model["n_inputs"] == 3 and model["task"] == "classification"
    assert store.checkpoint(job_id) is None, "a finished job keeps no checkpoint"
    assert store.job("someone-else", job_id) is None


def test_resume_from_checkpoint_matches_an_uninterrupted_run(store):
    X, y = data()
    straight = make_job(store, X, y)
    train(straight)

    resumed = make_job(store, X, y)
    net = engine.Network(NETWORK, n_inputs=3, seed=5, dtype="float64")
    records = []
    net.fit(X, y, {**TRAINING, "epochs": 3}, on_epoch=records.append)
    for record in records:
        store.append_epoch(resumed, record)
    store.put_checkpoint(resumed, net.save_bytes(), net.epochs_done)
    # An epoch recorded after the checkpoint (the worker died before the next one) must be
    # trained again, not duplicated.
    store.append_epoch(resumed, {**records[-1], "epoch": 4})

    assert train(resumed) == "succeeded"
    history = store.history(resumed)
    assert [e["epoch"] for e in history] == list(range(1, 9))
    assert [e["loss"] for e in history] == [e["loss"] for e in store.history(straight)]


def test_missing_dataset_fails_with_a_message(store):
    job_id = new_id("job")
    store.put_job({"id": job_id, "tenant": "t-direct", "status": "queued", "network": NETWORK,
                   "training": TRAINING, "dataset_id": "ds_gone", "device": "cpu",
                   "timeout_s": 60, "epochs": 8, "epoch": 0, "created_at": time.time()})
    assert train(job_id) == "failed"
    assert "ds_gone" in store.job(None, job_id)["error"]["message"]
