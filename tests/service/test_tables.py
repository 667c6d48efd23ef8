"""Real tables through real HTTP: the Palmer penguins CSV exactly as the `palmerpenguins` package
ships it (species, island and sex as text, NA for missing values, grams next to millimetres),
uploaded, trained with preprocessing "auto", and predicted from raw records."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import palmerpenguins
import pytest

from tests.service.helpers import wait_for_job

PENGUINS = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g",
            "sex", "year"]


def penguin_rows() -> list[dict]:
    with PENGUINS.open(newline="") as f:
        return list(csv.DictReader(f))


def split_rows(rows: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """A held-out 20% of the rows (the service never sees them in training)."""
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = int(len(rows) * 0.8)
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def csv_bytes(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def raw_record(row: dict) -> dict:
    """A CSV row as a user would send it: numbers as numbers, NA as null."""
    record = {}
    for key, value in row.items():
        if value == "NA":
            record[key] = None
        else:
            try:
                record[key] = float(value) if "." in value else int(value)
            except ValueError:
                record[key] = value
    return record


def upload(api, content: bytes, **fields) -> dict:
    answer = api.post("/v1/datasets", files={"file": ("penguins.csv", content)}, data=fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


def train(api, dataset_id: str, network: dict, **training) -> dict:
    job = api.post("/v1/jobs", json={"dataset_id": dataset_id, "network": network,
                                     "training": {"optimizer": "adam", "learning_rate": 0.01,
                                                  "epochs": 60, "batch_size": 16, "seed": 0,
                                                  **training}})
    assert job.status_code == 202, job.text
    done = wait_for_job(api, job.json()["id"], timeout_s=120)
    assert done["status"] == "succeeded", done
    return done


def test_penguins_upload_as_shipped_records_the_schema(api):
    meta = upload(api, PENGUINS.read_bytes(), target="species", name="penguins")
    assert (meta["n_samples"], meta["n_features"], meta["classes"]) == (344, 7, 3)
    columns = {c["name"]: c for c in meta["columns"]}
    assert list(columns) == FEATURES
    assert columns["island"]["kind"] == "categorical"
    assert columns["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert columns["sex"]["missing"] == 11 and columns["bill_length_mm"]["missing"] == 2
    assert columns["body_mass_g"]["kind"] == "numeric"
    assert columns["body_mass_g"]["min"] == 2700 and columns["body_mass_g"]["max"] == 6300
    assert meta["target"] == {"names": ["species"], "kind": "categorical",
                              "classes": ["Adelie", "Chinstrap", "Gentoo"], "rows_dropped": 0}
    assert api.get(f"/v1/datasets/{meta['id']}").json()["columns"] == meta["columns"]


def test_penguin_species_from_raw_records_with_species_names(api):
    train_rows, held_out = split_rows(penguin_rows())
    dataset = upload(api, csv_bytes(train_rows), target="species")
    network = {"layers": [{"units": 16, "activation": "relu"},
                          {"units": 3, "activation": "softmax"}], "loss": "cross_entropy"}
    job = train(api, dataset["id"], network, validation_split=0.1)
    model = api.get(f"/v1/models/{job['model_id']}").json()
    assert model["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert [c["name"] for c in model["input_columns"]] == FEATURES
    records = [raw_record(row) for row in held_out]  # the target key is sent and ignored
    answer = api.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": records})
    assert answer.status_code == 200, answer.text
    labels = answer.json()["labels"]
    accuracy = np.mean([label == row["species"] for label, row in zip(labels, held_out)])
    assert accuracy >= 0.97, accuracy

    odd = [{"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": None,
            "flipper_length_mm": 215, "body_mass_g": 5250, "sex": "female", "year": 2008},
           {"island": "Atlantis", "bill_length_mm": 39.1, "bill_depth_mm": 18.7,
            "flipper_length_mm": 181, "sex": "male"}]            # unseen island, absent keys
    answer = api.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": odd})
    assert answer.status_code == 200, answer.text
    assert all(label in model["classes"] for label in answer.json()["labels"])
    assert np.allclose(np.sum(answer.json()["outputs"], axis=1), 1.0, atol=1e-5)
