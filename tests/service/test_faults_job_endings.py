"""Jobs that end badly on their own (time limit, divergence) and jobs a user cancels.

These kill nothing, so they share one private stack with a single worker (its own Valkey,
never the session stack): jobs submitted together run one after another on it.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.fault_helpers import (blobs, epochs, fault_stack, job, submit, upload,
                                         wait_job)


@pytest.fixture(scope="module")
def fs(tmp_path_factory):
    with fault_stack(tmp_path_factory.mktemp("endings"), workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def dataset(fs):
    return upload(fs.api, *blobs(1200))


def test_job_over_its_time_limit_fails_naming_the_limit(fs, dataset):
    job_id = submit(fs.api, dataset["id"], epochs=5000, timeout_s=1)["id"]
    done = wait_job(fs, job_id, 30)
    assert done["status"] == "failed", done
    message = done["error"]["message"]
    assert "time limit of 1 s" in message and "timeout_s" in message, message
    assert 0 < done["progress"]["epoch"] < 5000
    assert done["finished_at"] - done["started_at"] < 10


def test_diverging_job_fails_with_the_engines_message_and_its_neighbour_succeeds(fs):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(64, 4))
    body = {"network": {"layers": [{"units": 8, "activation": "tanh"},
                                   {"units": 1, "activation": "identity"}],
                        "loss": "squared_error"},
            "data": {"X": X.tolist(), "y": (X.sum(axis=1) * 1e4).tolist()}}
    diverging = fs.api.post("/v1/jobs", json={
        **body, "training": {"optimizer": "sgd", "learning_rate": 1e6, "epochs": 50}})
    sane = fs.api.post("/v1/jobs", json={
        **body, "training": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 5}})
    assert diverging.status_code == sane.status_code == 202, (diverging.text, sane.text)

    failed = wait_job(fs, diverging.json()["id"], 30)
    assert failed["status"] == "failed", failed
    message, epoch = failed["error"]["message"], failed["error"]["epoch"]
    assert f"at epoch {epoch}" in message and "layer" in message, message
    assert "learning_rate" in message and "100000" in message, message  # a smaller rate
    assert failed["model_id"] is None
    assert wait_job(fs, sane.json()["id"], 30)["status"] == "succeeded"


def test_cancel_queued_job_never_starts_and_running_job_keeps_its_weights(fs, dataset):
    running_id = submit(fs.api, dataset["id"], epochs=5000)["id"]
    wait_job(fs, running_id, 30, until=lambda j: j["progress"]["epoch"] >= 3)
    queued_id = submit(fs.api, dataset["id"], epochs=5)["id"]  # behind it: one worker
    answer = fs.api.post(f"/v1/jobs/{queued_id}/cancel")
    assert answer.status_code == 202 and answer.json()["status"] == "canceled", answer.text

    answer = fs.api.post(f"/v1/jobs/{running_id}/cancel")
    assert answer.status_code == 202, answer.text
    asked_at_epoch = answer.json()["progress"]["epoch"]
    done = wait_job(fs, running_id, 15)
    assert done["status"] == "canceled", done
    # Stops within one epoch of the request, and keeps the weights it had.
    assert asked_at_epoch <= done["progress"]["epoch"] <= asked_at_epoch + 1
    assert len(epochs(fs.api, running_id)) == done["progress"]["epoch"]
    model = fs.api.get(f"/v1/models/{done['model_id']}").json()
    assert model["epochs_trained"] == done["progress"]["epoch"]
    X, y = blobs(30)
    predicted = fs.api.post(f"/v1/models/{done['model_id']}/predict",
                            json={"inputs": X.tolist()})
    assert predicted.status_code == 200, predicted.text
    assert np.mean(np.array(predicted.json()["labels"]) == y) > 0.9

    # The worker is free again and runs what comes next; the canceled job never ran.
    after = submit(fs.api, dataset["id"], epochs=3, batch_size=64)["id"]
    assert wait_job(fs, after, 30)["status"] == "succeeded"
    canceled = job(fs.api, queued_id)
    assert canceled["status"] == "canceled" and canceled["started_at"] is None, canceled
    assert epochs(fs.api, queued_id) == [] and canceled["model_id"] is None
    assert fs.api.post(f"/v1/jobs/{queued_id}/cancel").status_code == 409
