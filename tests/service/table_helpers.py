"""Shared by the table tests (test_tables, test_tables_serving, test_dates): the Palmer penguins
CSV as the `palmerpenguins` package ships it, rows as a user sends them, and uploads and
submits over HTTP."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import palmerpenguins

PENGUINS = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


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


def small_network(units: int, loss: str = "cross_entropy") -> dict:
    out = "softmax" if loss == "cross_entropy" else "identity"
    return {"layers": [{"units": 8, "activation": "tanh"}, {"units": units, "activation": out}],
            "loss": loss}


def submit(api, dataset_id: str, network: dict, **extra):
    return api.post("/v1/jobs", json={"dataset_id": dataset_id, "network": network,
                                      "training": {"epochs": 2}, **extra})
