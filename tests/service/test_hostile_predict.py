"""Predict bodies built to cost the API far more than their size (issue 22, items 5 and 7), sent
over HTTP to a stack of its own with two tenants: decode work is bounded by the rows actually
decoded x the model's columns before it is done, and one tenant's slow predicts cannot hold
another tenant's upload behind them."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from tests.service.helpers import classifier, wait_for_job
from tests.service.hostile_helpers import as_tenant, keyed_stack, peak_rss

MB = 1 << 20
BUDGET = 64 * MB
"""The stack's BACKPROP_PREDICT_MEMORY_BYTES."""
WIDE = 2000
"""Columns of the wide model: each row of its blocks takes 2000 x 8 bytes, whatever the body."""
GROWTH_MB = 40
"""MB the API may grow by while it refuses a body (the body itself, buffers)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with keyed_stack(tmp_path_factory.mktemp("hostile-predict"),
                     BACKPROP_PREDICT_MEMORY_BYTES=str(BUDGET)) as running:
        yield running


@pytest.fixture(scope="module")
def alice(stack):
    with as_tenant(stack, "alice") as client:
        client.timeout = httpx.Timeout(300)
        yield client


@pytest.fixture(scope="module")
def bob(stack):
    with as_tenant(stack, "bob") as client:
        yield client


def trained_table(api: httpx.Client, table: str, target: str) -> str:
    dataset = api.post("/v1/datasets", files={"file": ("t.csv", table.encode())},
                       data={"target": target})
    assert dataset.status_code == 201, dataset.text
    job = api.post("/v1/jobs", json={"dataset_id": dataset.json()["id"],
                                     "network": classifier(hidden=2, classes=2),
                                     "training": {"epochs": 1}})
    assert job.status_code == 202, job.text
    done = wait_for_job(api, job.json()["id"], timeout_s=240)
    assert done["status"] == "succeeded", done
    return done["model_id"]


@pytest.fixture(scope="module")
def wide(alice) -> str:
    """A model of WIDE numeric columns (a preparation: CSV and records are read for it)."""
    rng = np.random.default_rng(0)
    header = ",".join(f"c{i}" for i in range(WIDE)) + ",label\n"
    rows = "".join(",".join(str(v) for v in rng.integers(0, 9, WIDE)) + f",{i % 2}\n"
                   for i in range(20))
    return trained_table(alice, header + rows, "label")


@pytest.fixture(scope="module")
def texts(alice) -> str:
    """A model of a numeric and a text column: /v2 takes one tensor per column."""
    rows = "".join(f"{i % 7},{'red' if i % 3 else 'blue'},{i % 2}\n" for i in range(40))
    return trained_table(alice, "x,colour,label\n" + rows, "label")


def refused_413(answer: httpx.Response, *words: str) -> None:
    assert answer.status_code == 413, (answer.status_code, answer.text[:500])
    for word in words:
        assert word in answer.text, answer.text[:500]


# -- item 5: decode bounded by rows x columns -------------------------------------------------
def test_a_csv_body_of_few_bytes_a_row_is_sized_by_the_models_columns(stack, alice, wide):
    """A 50 kB CSV of one column and 25,000 rows against the 2,000-column model: its blocks
    would take 400 MB. Before: the API grew by that much, then answered 413."""
    body = b"c0\n" + b"1\n" * 25_000
    with peak_rss(stack.api.pid) as memory:
        answer = alice.post(f"/v1/models/{wide}/predict", content=body,
                            headers={"Content-Type": "text/csv"})
    assert memory["grew"] < GROWTH_MB, (memory, answer.status_code)
    refused_413(answer, "25000 rows x 2000 columns", "BACKPROP_PREDICT_MEMORY_BYTES")


def test_empty_records_are_sized_by_the_models_columns(stack, alice, wide):
    """6,000 records `{}` (18 kB) against the 2,000-column model: 12 million cells, each read
    one at a time. Before: 96 MB and seconds of decoding, then 413."""
    body = b'{"inputs": [' + b",".join([b"{}"] * 6000) + b"]}"
    with peak_rss(stack.api.pid) as memory:
        answer = alice.post(f"/v1/models/{wide}/predict", content=body,
                            headers={"Content-Type": "application/json"})
    assert memory["grew"] < GROWTH_MB, (memory, answer.status_code)
    refused_413(answer, "6000 rows x 2000 columns", "BACKPROP_PREDICT_MEMORY_BYTES")


def test_evaluate_bodies_are_sized_by_the_models_columns(stack, alice, wide):
    """/evaluate reads records and CSV as predict does: the same bound, before the blocks."""
    csv = b"c0,label\n" + b"1,0\n" * 25_000
    records = b'{"records": [' + b",".join([b'{"label": 0}'] * 6000) + b"]}"
    for body, media, rows in ((csv, "text/csv", 25_000), (records, "application/json", 6000)):
        with peak_rss(stack.api.pid) as memory:
            answer = alice.post(f"/v1/models/{wide}/evaluate", content=body,
                                headers={"Content-Type": media})
        assert memory["grew"] < GROWTH_MB, (memory, answer.status_code)
        refused_413(answer, f"{rows} rows x 2000 columns", "BACKPROP_PREDICT_MEMORY_BYTES")


def binary_infer(api: httpx.Client, model_id: str, name: str, datatype: str, shape: list,
                 blob: bytes) -> httpx.Response:
    header = httpx.Request("POST", "/", json={"inputs": [{
        "name": name, "datatype": datatype, "shape": shape,
        "parameters": {"binary_data_size": len(blob)}}]}).content
    return api.post(f"/v2/models/{model_id}/infer", content=header + blob,
                    headers={"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(header))})


def test_a_uint8_column_tensor_is_sized_before_its_blocks_are_built(stack, alice, texts):
    """An 8 MiB UINT8 tensor for the numeric column: 8 million rows. Before: the API built
    blocks of 8 million rows (+130 MB), then answered 413 for the rows."""
    rows = 8 * MB
    with peak_rss(stack.api.pid) as memory:
        answer = binary_infer(alice, texts, "x", "UINT8", [rows], bytes(rows))
    assert memory["grew"] < GROWTH_MB, (memory, answer.status_code)
    refused_413(answer, f"{rows} rows", "BACKPROP_MAX_PREDICT_ROWS")


def test_a_bytes_tensor_of_more_strings_than_rows_is_413_before_a_string_is_read(
        stack, alice, texts):
    """1.4 million two-byte strings (8 MiB in the binary form) for the text column. Before:
    every string was decoded into a Python object (+90 MB, seconds), then 413."""
    count = 8 * MB // 6
    blob = (2).to_bytes(4, "little") + b"ab"
    with peak_rss(stack.api.pid) as memory:
        answer = binary_infer(alice, texts, "colour", "BYTES", [count], blob * count)
    assert memory["grew"] < GROWTH_MB, (memory, answer.status_code)
    refused_413(answer, f"{count} strings", "BACKPROP_MAX_PREDICT_ROWS")


def test_bodies_within_the_bounds_still_answer(alice, wide, texts):
    records = alice.post(f"/v1/models/{wide}/predict", json={"inputs": [{"c0": 1}, {}]})
    assert records.status_code == 200, records.text
    assert len(records.json()["labels"]) == 2
    csv = alice.post(f"/v1/models/{wide}/predict", content=b"c0,c5\n1,2\n3,\n",
                     headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200 and "c0" in csv.text.splitlines()[0], csv.text[:300]
    answer = alice.post(f"/v2/models/{texts}/infer", json={"inputs": [
        {"name": "x", "datatype": "FP64", "shape": [2], "data": [1, 2]},
        {"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["red", "green"]}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["shape"] == [2, 2]


# -- item 7: decoder slots shared fairly -------------------------------------------------------
def test_one_tenants_slow_predicts_do_not_hold_another_tenants_upload(stack, alice, bob, wide):
    """Alice sends four records predicts that each take a decoder slot for a while (1,600
    records x 2,000 columns read one value at a time, 18 kB); then bob uploads a 50-row CSV.
    Before:
    one queue in arrival order, so bob's upload waited for alice's third and fourth predicts
    to get their slots, and finished after them. Now a freed slot goes to the tenant holding
    fewest: bob's upload finishes while alice's last predicts still run or wait."""
    body = b'{"inputs": [' + b",".join([b'{"c1": 0.5}'] * 1600) + b"]}"
    url = f"/v1/models/{wide}/predict"
    finished: dict[str, float] = {}
    answers: dict[str, int] = {}

    def predict(n: int) -> None:
        answer = alice.post(url, content=body, headers={"Content-Type": "application/json"})
        finished[f"alice-{n}"], answers[f"alice-{n}"] = time.monotonic(), answer.status_code

    threads = [threading.Thread(target=predict, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)                  # in this order: all four queued before bob's upload
    table = "a,b,label\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(50))
    upload = bob.post("/v1/datasets", files={"file": ("b.csv", table.encode())},
                      data={"target": "label"})
    finished["bob"] = time.monotonic()
    for thread in threads:
        thread.join(300)
    assert upload.status_code == 201, upload.text
    assert set(answers.values()) == {200}, answers
    later = sorted(t for name, t in finished.items() if name != "bob")[2:]
    assert finished["bob"] < min(later), {k: round(v - finished["bob"], 2)
                                          for k, v in finished.items()}
