"""What a job or upload may take of the machine: a job whose training would hold more than
BACKPROP_MAX_TRAINING_BYTES in its worker is refused at submit, naming what to change; and the
embedded Valkey has a maxmemory past which writes are refused (507), never evicted."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from core.settings import Settings
from service.embedded_redis import free_port
from service.launcher import Stack
from tests.service.helpers import npz_bytes, wait_for_job


def wide(units: int, activation: str = "tanh") -> dict:
    return {"layers": [{"units": units, "activation": activation},
                       {"units": 1, "activation": "identity"}], "loss": "squared_error"}


def inline(rows: int, features: int = 1) -> dict:
    X = np.random.default_rng(0).normal(size=(rows, features)).round(3)
    return {"X": X.tolist(), "y": X[:, 0].tolist()}


# -- the training budget ----------------------------------------------------------------------------
def test_full_batch_training_of_a_very_wide_layer_is_refused_at_submit(api):
    """1-65536-1 is 196K parameters, far under the parameter limit, yet full-batch training
    over 2048 rows held 1.2 GB in the worker (each layer keeps a 2048 x 65536 activation and
    delta). Before: accepted."""
    answer = api.post("/v1/jobs", json={"network": wide(65536), "data": inline(2048),
                                        "training": {"optimizer": "gd", "epochs": 1}})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "training.optimizer", error
    assert "BACKPROP_MAX_TRAINING_BYTES" in error["message"], error
    assert "mini-batches" in error["message"] and "batch_size" in error["message"], error


def test_the_same_network_in_mini_batches_fits_and_trains(api):
    answer = api.post("/v1/jobs", json={"network": wide(65536), "data": inline(2048),
                                        "training": {"optimizer": "sgd", "batch_size": 128,
                                                     "learning_rate": 1e-6, "epochs": 1}})
    assert answer.status_code == 202, answer.text
    done = wait_for_job(api, answer.json()["id"], timeout_s=120)
    assert done["status"] == "succeeded", done["error"]


def test_a_batch_too_big_for_the_budget_names_batch_size(api):
    answer = api.post("/v1/jobs", json={"network": wide(65536, "relu"), "data": inline(4096),
                                        "training": {"optimizer": "adam", "batch_size": 4096,
                                                     "epochs": 1}})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "training.batch_size" and "smaller batch_size" in error["message"]


def test_a_network_too_big_for_the_budget_names_the_network(api):
    """40M parameters (under BACKPROP_MAX_PARAMETERS) in float64 with Adam: weights, gradients,
    two moments and a saved copy are 1.6 GB before any data."""
    network = {"layers": [{"units": 8192, "activation": "relu"},
                          {"units": 4096, "activation": "relu"},
                          {"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
    answer = api.post("/v1/jobs", json={"network": network, "dtype": "float64",
                                        "preprocessing": "none",  # label 1 of 2 units
                                        "data": {"X": [[0.5] * 784], "y": [1]},
                                        "training": {"optimizer": "adam", "epochs": 1}})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "network" and "narrower or fewer layers" in error["message"], error


# -- Valkey's maxmemory ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("maxmemory"))
    stack = Stack(Settings(redis_url=None, data_dir=root / "data", redis_maxmemory="12mb"),
                  "127.0.0.1", free_port(), workers=1, log_dir=root / "logs").start()
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        yield stack, client
    stack.stop()


def test_the_embedded_valkey_has_maxmemory_and_never_evicts(small_store):
    stack, _ = small_store
    config = redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"]).config_get("maxmemory*")
    assert config["maxmemory"] == str(12 * 2**20)
    assert config["maxmemory-policy"] == "noeviction"


def test_a_full_store_refuses_writes_with_507_and_keeps_every_record(small_store):
    _, api = small_store
    X = np.random.default_rng(0).normal(size=(60_000, 8)).astype(np.float32)  # ~2.4 MB
    stored, answer = [], None
    for _ in range(12):
        answer = api.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=X[:, 0]))})
        if answer.status_code != 201:
            break
        stored.append(answer.json()["id"])
    assert answer.status_code == 507, answer.text
    error = answer.json()["error"]
    assert "BACKPROP_REDIS_MAXMEMORY" in error["message"] and "delete" in error["message"]
    assert stored, "not one dataset fitted"
    for dataset_id in stored:  # nothing was evicted to make room
        assert api.get(f"/v1/datasets/{dataset_id}").status_code == 200
    # Room again: a write needs its size twice (Valkey counts the request it is reading).
    for dataset_id in stored[:2]:
        assert api.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    again = api.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=X[:, 0]))})
    assert again.status_code == 201, again.text
