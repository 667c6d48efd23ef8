"""A table model wherever it goes: a CSV file scored as CSV, ONNX on raw columns, and the
inference protocol with one input per column, each matching /v1 predict on raw records."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from tests.service.helpers import wait_for_job
from tests.service.table_helpers import (PENGUINS, csv_bytes, penguin_rows, raw_record,
                                         small_network, submit, upload)


def onnx_feeds(rows: list[dict], model: dict) -> dict:
    """Raw columns as onnxruntime inputs: numbers as float32 (NaN for NA), text as strings
    ("" for NA), each of shape (rows, 1)."""
    feeds = {}
    for column in model["input_columns"]:
        values = [row[column["name"]] for row in rows]
        if column["kind"] == "numeric":
            feeds[column["name"]] = np.array([math.nan if v == "NA" else float(v)
                                              for v in values], np.float32).reshape(-1, 1)
        else:
            feeds[column["name"]] = np.array(["" if v == "NA" else v for v in values],
                                             dtype=object).reshape(-1, 1)
    return feeds


@pytest.mark.parametrize("target,network", [
    ("species", small_network(3)),
    ("body_mass_g", small_network(1, "squared_error")),
], ids=["classifier", "regressor"])
def test_onnx_on_raw_columns_matches_predict(api, target, network):
    onnxruntime = pytest.importorskip("onnxruntime")
    dataset = upload(api, PENGUINS.read_bytes(), target=target)
    model_id = wait_for_job(api, submit(api, dataset["id"], network).json()["id"])["model_id"]
    model = api.get(f"/v1/models/{model_id}").json()
    rows = penguin_rows()
    rows[0]["island"] = "Atlantis"                                 # unseen
    session = onnxruntime.InferenceSession(api.get(f"/v1/models/{model_id}/onnx").content)
    names = [c["name"] for c in dataset["columns"]]
    assert [i.name for i in session.get_inputs()] == [c["name"] for c in model["input_columns"]]
    assert sorted(c["name"] for c in model["input_columns"]) == sorted(names)
    results = session.run(None, onnx_feeds(rows, model))
    served = api.post(f"/v1/models/{model_id}/predict",
                      json={"inputs": [raw_record(row) for row in rows]}).json()
    np.testing.assert_allclose(results[0], served["outputs"], rtol=1e-5, atol=1e-5 * (
        1 if target == "species" else 1000))
    if target == "species":
        assert results[1].tolist() == served["labels"]


def test_the_inference_protocol_takes_one_input_per_column(api, stack):
    """/v2 for a table model: metadata lists each raw column (BYTES for text), infer takes
    them as JSON or binary tensors (tritonclient's own encoding), and answers the class names
    /v1 predict answers."""
    triton = pytest.importorskip("tritonclient.http")
    dataset = upload(api, PENGUINS.read_bytes(), target="species")
    model_id = wait_for_job(api, submit(api, dataset["id"], small_network(3)).json()["id"])[
        "model_id"]
    metadata = api.get(f"/v2/models/{model_id}").json()
    kinds = {c["name"]: c["datatype"] for c in metadata["inputs"]}
    assert kinds == {"island": "BYTES", "bill_length_mm": "FP32", "bill_depth_mm": "FP32",
                     "flipper_length_mm": "FP32", "body_mass_g": "FP32", "sex": "BYTES",
                     "year": "FP32"}
    assert {"name": "label", "datatype": "BYTES", "shape": [-1]} in metadata["outputs"]
    rows = penguin_rows()[:6]
    rows[1]["island"] = "Atlantis"
    served = api.post(f"/v1/models/{model_id}/predict",
                      json={"inputs": [raw_record(row) for row in rows]}).json()

    def column(name: str) -> list:
        if kinds[name] == "BYTES":
            return ["" if row[name] == "NA" else row[name] for row in rows]
        return [None if row[name] == "NA" else float(row[name]) for row in rows]

    body = {"inputs": [{"name": name, "datatype": kinds[name], "shape": [len(rows), 1],
                        "data": column(name)} for name in kinds]}
    answer = api.post(f"/v2/models/{model_id}/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {t["name"]: t["data"] for t in answer.json()["outputs"]}
    assert outputs["label"] == served["labels"]
    np.testing.assert_allclose(np.reshape(outputs["output"], (len(rows), 3)),
                               served["outputs"], rtol=1e-5, atol=1e-6)

    client = triton.InferenceServerClient(stack.url.removeprefix("http://"))
    inputs = []
    for name, datatype in kinds.items():
        values = column(name)
        array = (np.array(values, dtype=object) if datatype == "BYTES" else
                 np.array([np.nan if v is None else v for v in values], np.float32))
        tensor = triton.InferInput(name, [len(rows), 1], datatype)
        tensor.set_data_from_numpy(array.reshape(-1, 1), binary_data=True)
        inputs.append(tensor)
    result = client.infer(model_id, inputs, outputs=[
        triton.InferRequestedOutput("label", binary_data=True)])
    assert [v.decode() for v in result.as_numpy("label")] == served["labels"]

    unknown = api.post(f"/v2/models/{model_id}/infer", json={"inputs": [
        {"name": "beak", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]})
    assert unknown.status_code == 400 and "island" in unknown.json()["error"]


def test_a_csv_file_is_scored_as_csv(api):
    dataset = upload(api, PENGUINS.read_bytes(), target="species")
    job = submit(api, dataset["id"], small_network(3))
    model_id = wait_for_job(api, job.json()["id"])["model_id"]
    rows = penguin_rows()[:5]
    answer = api.post(f"/v1/models/{model_id}/predict", content=csv_bytes(rows),
                      headers={"content-type": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    scored = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["bill_length_mm"] for row in scored][:3] == ["39.1", "39.5", "40.3"]
    assert all(row["species_predicted"] in ("Adelie", "Chinstrap", "Gentoo") for row in scored)
    total = [sum(float(row[f"p_{c}"]) for c in ("Adelie", "Chinstrap", "Gentoo"))
             for row in scored]
    assert np.allclose(total, 1.0, atol=1e-5)
    as_json = api.post(f"/v1/models/{model_id}/predict",
                       json={"inputs": [raw_record(row) for row in rows]}).json()
    assert [row["species_predicted"] for row in scored] == as_json["labels"]
