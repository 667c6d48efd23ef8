"""End to end over real HTTP: scikit-learn's bundled digits, trained by a real RQ worker."""

import numpy as np
from sklearn.datasets import load_digits

from tests.service.helpers import upload_npz, wait_for_job


def test_digits_classifier_reaches_95_percent_test_accuracy(api):
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1437], order[1437:]
    dataset = upload_npz(api, X[train], y[train], name="digits-train")
    assert (dataset["n_samples"], dataset["n_features"], dataset["classes"]) == (1437, 64, 10)

    submitted = api.post("/v1/jobs", json={
        "dataset_id": dataset["id"],
        "network": {"layers": [{"units": 64, "activation": "relu"},
                               {"units": 10, "activation": "softmax"}],
                    "loss": "cross_entropy", "init": {"scheme": "he"}},
        "training": {"optimizer": "adam", "learning_rate": 0.003, "epochs": 40,
                     "batch_size": 32, "validation_split": 0.1, "seed": 1}})
    assert submitted.status_code == 202, submitted.text
    assert submitted.headers["location"] == f"/v1/jobs/{submitted.json()['id']}"
    job = wait_for_job(api, submitted.json()["id"], timeout_s=120)
    assert job["status"] == "succeeded", job
    assert job["progress"]["epoch"] == 40 and job["progress"]["fraction"] == 1.0

    history = api.get(f"/v1/jobs/{job['id']}/history").json()["epochs"]
    assert [e["epoch"] for e in history] == list(range(1, 41))
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(len(e["grad_norms"]) == 2 and e["val_loss"] is not None for e in history)

    answer = api.post(f"/v1/models/{job['model_id']}/predict",
                      json={"inputs": X[test].tolist()})
    assert answer.status_code == 200, answer.text
    labels = np.array(answer.json()["labels"])
    accuracy = float((labels == y[test]).mean())
    print(f"digits test accuracy through the HTTP API: {accuracy:.4f}")
    assert accuracy >= 0.95
