"""Shared by the sweep tests (test_sweeps, test_sweeps_sharing, test_dashboard_sweeps): a small
regressor and its search space on the penguins' body mass, starting and waiting for sweeps."""

from __future__ import annotations

import time

import httpx
import numpy as np

from tests.service.table_helpers import csv_bytes, penguin_rows, raw_record, split_rows, upload


REGRESSOR = {"layers": [{"units": 8, "activation": "relu"},
                        {"units": 1, "activation": "identity"}], "loss": "squared_error"}
BASE = {"network": REGRESSOR,
        "training": {"optimizer": "sgd", "batch_size": 16, "validation_split": 0.2}}
SPACE = {"training.learning_rate": {"log_uniform": [0.0003, 0.1]},
         "network.layers.0.units": [4, 16, 32],
         "network.layers.0.activation": ["relu", "tanh"]}
TRIALS, MAX_EPOCHS = 12, 27
# Around the service's defaults (base {}: Adam at 5e-3, one ReLU layer of 100, early stopping
# on val_loss, at most 200 epochs): the paths reach into the default network and training.
DEFAULTS_SPACE = {"training.learning_rate": {"log_uniform": [0.0005, 0.05]},
                  "network.layers.0.units": [32, 100, 256],
                  "network.layers.0.activation": ["relu", "tanh"],
                  "training.weight_decay": [0.0, 0.0001, 0.001, 0.01]}


def wait_for_sweep(api: httpx.Client, sweep_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        sweep = api.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] != "running":
            return sweep
        assert time.monotonic() < deadline, f"sweep still running: {sweep['progress']}"
        time.sleep(0.2)


def body_mass(api: httpx.Client) -> tuple[str, list[dict]]:
    """The penguins' body mass table without its held-out 20%: (dataset id, held-out rows)."""
    train_rows, held_out = split_rows(penguin_rows())
    dataset = upload(api, csv_bytes(train_rows), target="body_mass_g")
    return dataset["id"], [row for row in held_out if row["body_mass_g"] != "NA"]


def held_out_r2(api: httpx.Client, model_id: str, rows: list[dict]) -> float:
    answer = api.post(f"/v1/models/{model_id}/predict",
                      json={"inputs": [raw_record(row) for row in rows]})
    assert answer.status_code == 200, answer.text
    truth = np.array([float(row["body_mass_g"]) for row in rows])
    guess = np.array(answer.json()["outputs"])[:, 0]
    return 1 - ((truth - guess) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()


def start(api: httpx.Client, **body) -> dict:
    answer = api.post("/v1/sweeps", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"] == f"/v1/sweeps/{answer.json()['id']}"
    return answer.json()
