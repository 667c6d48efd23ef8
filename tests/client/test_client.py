"""The Python client against the real stack: upload, train, wait, history, predict, errors."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import backprop_client.client
from backprop_client import (ApiError, Client, JobFailed, NotFound, ServiceUnavailable,
                             ValidationFailed)
from service.embedded_redis import free_port
from tests.service.helpers import blobs, classifier

TRAINING = {"optimizer": "adam", "learning_rate": 0.05, "epochs": 12, "batch_size": 32,
            "validation_split": 0.2, "seed": 1}


@pytest.fixture()
def client(stack):
    with Client(stack.url) as c:
        yield c


@pytest.fixture(scope="module")
def trained(stack):
    """One small classifier trained through the client: (client, job, X, y)."""
    X, y = blobs(n=150, classes=3, features=4)
    with Client(stack.url) as c:
        dataset = c.upload(X, y, name="blobs")
        assert (dataset["n_samples"], dataset["n_features"], dataset["classes"]) == (150, 4, 3)
        # "none": the test below checks predict against a forward pass of the raw weights
        job = c.train(classifier(hidden=16), TRAINING, dataset=dataset, preprocessing="none")
        assert job.status in ("queued", "running")
        yield c, job.wait(progress=False, timeout=60), X, y


def test_wait_returns_the_finished_job(trained):
    _, job, _, _ = trained
    assert job.status == "succeeded" and job.done
    assert (job.epoch, job.epochs) == (12, 12)
    assert job.model_id.startswith("mdl_")
    assert job.metrics["loss"] > 0 and job.metrics["val_loss"] > 0


def test_history_arrays_match_the_api(trained, api):
    _, job, _, _ = trained
    history = job.history()
    raw = api.get(f"/v1/jobs/{job.id}/history").json()["epochs"]
    assert history["epoch"].tolist() == list(range(1, 13))
    assert history["epoch"].dtype == np.int64
    np.testing.assert_array_equal(history["loss"], [e["loss"] for e in raw])
    np.testing.assert_array_equal(history["val_loss"], [e["val_loss"] for e in raw])
    np.testing.assert_array_equal(history["seconds"], [e["seconds"] for e in raw])
    assert history["grad_norms"].shape == (12, 2) and np.all(history["grad_norms"] > 0)
    assert history["metric"].shape == (12,) and "metric_name" not in history
    assert history["loss"][-1] < history["loss"][0]
    # a second call fetches nothing new and gives the same arrays
    again = job.history()
    np.testing.assert_array_equal(again["grad_norms"], history["grad_norms"])


def test_model_predict_matches_a_numpy_forward_pass_of_its_weights(trained):
    client, job, X, y = trained
    model = job.model()
    assert (model.task, model.n_inputs, model.n_outputs) == ("classification", 4, 3)
    outputs = model.predict(X)
    assert outputs.shape == (150, 3)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, rtol=1e-5)

    (W0, b0), (W1, b1) = model.weights()
    assert (W0.shape, b0.shape, W1.shape, b1.shape) == ((16, 4), (16,), (3, 16), (3,))
    z = np.tanh(X.astype(np.float64) @ W0.T + b0) @ W1.T + b1
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)

    labels = model.predict_labels(X)
    assert labels.dtype == np.int64 and labels.tolist() == outputs.argmax(axis=1).tolist()
    assert (labels == y).mean() >= 0.9
    assert model.predict(X[0]).shape == (1, 3)  # one row given as a vector
    assert model.input_columns is None and model.classes is None  # plain arrays have no names
    with pytest.raises(ValidationFailed) as width:
        model.predict(X[:, :3])
    assert width.value.field == "inputs" and "each row needs 4 values" in width.value.message


def test_upload_csv_and_train_on_arrays(client, tmp_path):
    X, y = blobs(n=60, classes=2, features=3, seed=4)
    path = tmp_path / "two.csv"
    rows = "\n".join(",".join(f"{v:.6f}" for v in x) + f",{int(t)}" for x, t in zip(X, y))
    path.write_text("a,b,c,label\n" + rows + "\n")
    dataset = client.upload_csv(path, target="label")
    assert (dataset["name"], dataset["source"]) == ("two", "csv")
    assert (dataset["n_samples"], dataset["n_features"], dataset["classes"]) == (60, 3, 2)
    assert client.dataset(dataset["id"])["sha256"] == dataset["sha256"]

    job = client.train(classifier(hidden=4, classes=2), {"epochs": 3}, X=X, y=y, seed=7)
    assert job.refresh().info["dataset_id"] != dataset["id"]  # X, y were uploaded anew
    assert job.wait(progress=False, timeout=60).status == "succeeded"
    assert any(j.id == job.id for j in client.jobs(status="succeeded"))


def test_a_dataframe_is_uploaded_as_csv_and_trained_on(client):
    X, y = blobs(n=90, classes=3, features=3, seed=6)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=y)
    dataset = client.upload(frame, target="label", name="frame")
    assert (dataset["name"], dataset["source"]) == ("frame", "csv")
    assert (dataset["n_samples"], dataset["n_features"], dataset["classes"]) == (90, 3, 3)
    job = client.train(classifier(hidden=8), TRAINING, X=frame, target="label")
    assert job.wait(progress=False, timeout=60).status == "succeeded"
    with pytest.raises(ValueError, match="target="):
        client.upload(frame, y)
    with pytest.raises(ValueError, match="y=..."):
        client.upload(X, target="label")


def test_wide_predicts_are_cut_below_the_services_limits(trained, monkeypatch):
    """Bodies of about PREDICT_CHUNK_BYTES each, concatenated back in order."""
    client, job, X, _ = trained
    model = job.model()
    whole = model.predict(X)
    monkeypatch.setattr(backprop_client.client, "PREDICT_CHUNK_BYTES", 7 * X[:1].nbytes)
    requests = []
    client.http.event_hooks["request"].append(requests.append)
    try:
        pieces, labels = model.predict(X), model.predict_labels(X)
    finally:
        client.http.event_hooks["request"].remove(requests.append)
    assert len(requests) == 2 * 22  # 150 rows, 7 per body: 22 bodies for each call
    np.testing.assert_array_equal(pieces, whole)
    assert labels.tolist() == whole.argmax(axis=1).tolist()


def test_url_and_key_come_from_the_environment(stack, monkeypatch):
    monkeypatch.setenv("BACKPROP_URL", stack.url + "/")
    monkeypatch.setenv("BACKPROP_API_KEY", "some-key")
    with Client() as c:
        assert c.url == stack.url and c.http.headers["Authorization"] == "Bearer some-key"
        assert c.ready()["status"] == "ok"
    with Client(api_key="") as c:
        assert "Authorization" not in c.http.headers


def test_progress_bar_shows_epoch_loss_val_loss_and_eta(client, capsys):
    X, y = blobs(n=60, classes=3, features=4, seed=2)
    job = client.train(classifier(hidden=4), {**TRAINING, "epochs": 5}, X=X, y=y)
    job.wait(timeout=60)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert job.id in last and "succeeded" in last and "epoch 5/5" in last, err
    assert "loss " in last and "val_loss " in last and "ETA 0:00" in last, err


def test_failed_job_raises_job_failed_with_the_workers_message_and_epoch(client):
    X = np.linspace(0, 1, 64, dtype=np.float32).reshape(32, 2) * 1e3
    y = (X.sum(axis=1) * 1e3).astype(np.float32)
    network = {"layers": [{"units": 8, "activation": "relu"},
                          {"units": 1, "activation": "identity"}], "loss": "squared_error"}
    job = client.train(network, {"optimizer": "sgd", "learning_rate": 100.0, "epochs": 5}, X=X, y=y)
    with pytest.raises(JobFailed) as failed:
        job.wait(progress=False, timeout=60)
    error = failed.value
    assert error.job.status == "failed" and error.epoch == error.job.error["epoch"] >= 1
    assert "learning_rate 100 is probably too large" in error.message
    assert str(error).startswith(f"job {job.id} failed at epoch {error.epoch}: the training loss")
    with pytest.raises(JobFailed):
        job.model()


def test_cancel_a_running_job_keeps_its_weights(client):
    X, y = blobs(n=60, classes=3, features=4, seed=3)
    job = client.train(classifier(hidden=4), {"epochs": 10_000, "batch_size": 8}, X=X, y=y)
    deadline = time.monotonic() + 30
    while job.refresh().epoch < 1:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    with pytest.raises(TimeoutError, match="still running"):
        job.wait(progress=False, timeout=0.05)
    with pytest.raises(ApiError, match="has no model yet"):
        job.model()
    job.cancel().wait(progress=False, timeout=30)
    assert job.status == "canceled" and 1 <= job.epoch < 10_000
    assert job.model().predict(X[:2]).shape == (2, 3)


def test_not_found_is_typed_and_carries_the_message(client):
    with pytest.raises(NotFound) as missing:
        client.job("job_nope")
    assert missing.value.status == 404 and "no job with id 'job_nope'" in missing.value.message
    with pytest.raises(NotFound):
        client.model("mdl_nope")
    assert issubclass(NotFound, ApiError)


def test_validation_failed_names_the_field(client):
    X, y = blobs(n=30)
    dataset = client.upload(X, y)
    bad = {"layers": [{"units": 4, "activation": "swish"}, {"units": 3, "activation": "softmax"}],
           "loss": "cross_entropy"}
    with pytest.raises(ValidationFailed) as invalid:
        client.train(bad, {"epochs": 1}, dataset=dataset["id"])
    assert invalid.value.status == 422
    assert invalid.value.field == "network.layers[0].activation"
    assert "unknown activation 'swish'" in invalid.value.message and "tanh" in invalid.value.message
    with pytest.raises(ValidationFailed) as rows:
        client.upload(X, y[:10])
    assert rows.value.field == "y" and "has 10 rows but X has 30" in rows.value.message


def test_unreachable_service_is_service_unavailable():
    with Client(f"http://127.0.0.1:{free_port()}") as c, pytest.raises(ServiceUnavailable) as down:
        c.jobs()
    assert down.value.status is None and "cannot reach the API" in down.value.message
