"""Date columns end to end through real HTTP: a generated table whose label depends on the month
of a date column and whose number depends on the hour of a datetime column, uploaded as CSV
(and Parquet), trained with preprocessing "auto", and predicted from the same rows as JSON
records, CSV, /v2 tensors (BYTES dates), ONNX (onnxruntime) and the Python client's DataFrame."""

from __future__ import annotations

import csv
import datetime
import io
import math

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backprop_client import Client
from tests.service.helpers import wait_for_job
from tests.service.table_helpers import csv_bytes, submit, upload

EPOCH = datetime.datetime(1970, 1, 1)
WARM = range(4, 10)
"""Months (April to September) whose rows are labelled "warm"."""
NETWORK = {"layers": [{"units": 24, "activation": "tanh"},
                      {"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
REGRESSION = {"layers": [{"units": 16, "activation": "tanh"},
                         {"units": 1, "activation": "identity"}], "loss": "squared_error"}
TRAINING = {"optimizer": "adam", "learning_rate": 0.01, "epochs": 150, "batch_size": 32,
            "seed": 0}


def dated_rows(n: int, seed: int) -> list[dict]:
    """day: a date (2015-2019); at: a datetime with hours, a few missing; x: noise;
    season: warm or cold by day's month; busy: twice at's hour plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        day = datetime.date(2015, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 1826)))
        at = datetime.datetime(2016, 1, 1) + datetime.timedelta(
            days=int(rng.integers(0, 700)), hours=int(rng.integers(0, 24)),
            minutes=int(rng.integers(0, 60)))
        rows.append({"day": day.isoformat(),
                     "at": "" if i % 25 == 7 else at.isoformat(),
                     "x": f"{rng.normal():.4f}",
                     "season": "warm" if day.month in WARM else "cold",
                     "busy": f"{2 * at.hour + rng.normal(0, 0.3):.3f}"})
    return rows


def record(row: dict) -> dict:
    """A row as JSON records send it: ISO text for dates, null when missing, numbers."""
    return {"day": row["day"], "at": row["at"] or None, "x": float(row["x"])}


def days(text: str) -> float:
    """ISO text -> days since 1970 (the ONNX graph's date input), NaN when missing."""
    if not text:
        return math.nan
    return (datetime.datetime.fromisoformat(text) - EPOCH) / datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def season(stack):
    """(dataset, model, held-out rows): a classifier of the season from the table's dates."""
    with httpx.Client(base_url=stack.url, timeout=60) as api:
        dataset = upload(api, csv_bytes(dated_rows(600, seed=0)), target="season",
                         ignore="busy")
        job = submit(api, dataset["id"], NETWORK, training=TRAINING)
        assert job.status_code == 202, job.text
        finished = wait_for_job(api, job.json()["id"], timeout_s=180)
        assert finished["status"] == "succeeded", finished
        model = api.get(f"/v1/models/{finished['model_id']}").json()
    return dataset, model, dated_rows(80, seed=1)


def test_a_date_column_is_a_date_with_its_range_and_features(season):
    dataset, model, _ = season
    columns = {c["name"]: c for c in dataset["columns"]}
    day, at = columns["day"], columns["at"]
    assert (day["kind"], day["features"]) == ("date", ["year", "month", "weekday", "yearday"])
    assert day["earliest"] >= "2015-01-01" and day["latest"] <= "2019-12-31"
    assert at["features"][-1] == "hour" and at["missing"] == 24 and "T" in at["latest"]
    assert at["min"] >= days("2016-01-01")
    assert model["input_columns"][:2] == [
        {"name": "day", "kind": "date", "features": day["features"]},
        {"name": "at", "kind": "date", "features": at["features"]}]


def test_the_month_is_learned_and_every_path_predicts_the_same(api, season):
    _, model, rows = season
    model_id = model["id"]
    served = api.post(f"/v1/models/{model_id}/predict",
                      json={"inputs": [record(r) for r in rows]})
    assert served.status_code == 200, served.text
    served = served.json()
    accuracy = np.mean([label == row["season"] for label, row in zip(served["labels"], rows)])
    assert accuracy >= 0.9, accuracy                     # held-out rows: the month was learned

    scored = api.post(f"/v1/models/{model_id}/predict", content=csv_bytes(rows),
                      headers={"content-type": "text/csv"})
    assert scored.status_code == 200, scored.text
    table = list(csv.DictReader(io.StringIO(scored.text)))
    assert [r["season_predicted"] for r in table] == served["labels"]
    np.testing.assert_allclose([float(r["p_warm"]) for r in table],
                               np.asarray(served["outputs"])[:, 1], rtol=1e-5, atol=1e-6)

    metadata = api.get(f"/v2/models/{model_id}").json()
    kinds = {t["name"]: t["datatype"] for t in metadata["inputs"]}
    assert kinds == {"day": "BYTES", "at": "BYTES", "x": "FP32"}
    body = {"inputs": [
        {"name": "day", "datatype": "BYTES", "shape": [len(rows), 1],
         "data": [r["day"] for r in rows]},
        {"name": "at", "datatype": "BYTES", "shape": [len(rows), 1],
         "data": [r["at"] for r in rows]},                       # "" is missing
        {"name": "x", "datatype": "FP32", "shape": [len(rows), 1],
         "data": [float(r["x"]) for r in rows]}]}
    inferred = api.post(f"/v2/models/{model_id}/infer", json=body)
    assert inferred.status_code == 200, inferred.text
    outputs = {t["name"]: t["data"] for t in inferred.json()["outputs"]}
    assert outputs["label"] == served["labels"]
    np.testing.assert_allclose(np.reshape(outputs["output"], (len(rows), 2)),
                               served["outputs"], rtol=1e-5, atol=1e-6)


def test_onnx_derives_the_dates_in_its_graph(api, season):
    onnxruntime = pytest.importorskip("onnxruntime")
    _, model, rows = season
    session = onnxruntime.InferenceSession(api.get(f"/v1/models/{model['id']}/onnx").content)
    assert {i.name: i.type for i in session.get_inputs()} == {
        "day": "tensor(double)", "at": "tensor(double)", "x": "tensor(float)"}
    feeds = {"day": np.array([[days(r["day"])] for r in rows]),
             "at": np.array([[days(r["at"])] for r in rows]),
             "x": np.array([[float(r["x"])] for r in rows], dtype=np.float32)}
    outputs, labels = session.run(None, feeds)
    served = api.post(f"/v1/models/{model['id']}/predict",
                      json={"inputs": [record(r) for r in rows]}).json()
    np.testing.assert_allclose(outputs, served["outputs"], rtol=1e-5, atol=1e-5)
    assert labels.tolist() == served["labels"]


def test_the_client_sends_datetime64_columns_as_iso_text(stack, season):
    _, model, rows = season
    frame = pd.DataFrame({"day": pd.to_datetime([r["day"] for r in rows]),
                          "at": pd.to_datetime([r["at"] or None for r in rows]),
                          "x": [float(r["x"]) for r in rows]})
    assert frame["day"].dtype.kind == "M" and frame["at"].isna().any()
    with Client(stack.url) as client:
        remote = client.model(model["id"])
        from_frame = remote.predict(frame)
        from_records = remote.predict([record(r) for r in rows])
    np.testing.assert_allclose(from_frame, from_records, rtol=1e-6, atol=1e-7)


def test_the_hour_of_a_datetime_is_learned_and_offsets_are_converted_to_utc(api):
    rows = dated_rows(500, seed=2)
    dataset = upload(api, csv_bytes(rows), target="busy", ignore="season")
    job = submit(api, dataset["id"], REGRESSION, training=TRAINING)
    assert job.status_code == 202, job.text
    model_id = wait_for_job(api, job.json()["id"], timeout_s=180)["model_id"]
    held_out = [r for r in dated_rows(60, seed=3) if r["at"]]
    served = api.post(f"/v1/models/{model_id}/predict",
                      json={"inputs": [record(r) for r in held_out]}).json()
    error = np.abs(np.ravel(served["outputs"]) - [float(r["busy"]) for r in held_out])
    assert error.mean() < 2.0, error.mean()               # busy spans 0..46 with the hour
    same_moment = [{"day": "2017-06-01", "x": 0.0, "at": at} for at in (
        "2016-03-01T13:30:00", "2016-03-01T15:30:00+02:00", "2016-03-01T13:30Z")]
    answer = api.post(f"/v1/models/{model_id}/predict", json={"inputs": same_moment}).json()
    assert np.ptp(np.ravel(answer["outputs"])) < 1e-6


def test_parquet_dates_and_timestamps_are_date_columns(api, tmp_path):
    n = 30
    table = pa.table({
        "on": pa.array([datetime.date(2020, 1, 1) + datetime.timedelta(days=i)
                        for i in range(n)], pa.date32()),
        "stamp": pa.array([datetime.datetime(2021, 5, 1, i % 24) for i in range(n)],
                          pa.timestamp("ms", tz="Europe/Oslo")),
        "y": pa.array([i % 2 for i in range(n)])})
    path = tmp_path / "dated.parquet"
    pq.write_table(table, path)
    answer = api.post("/v1/datasets", files={"file": ("dated.parquet", path.read_bytes())},
                      data={"target": "y"})
    assert answer.status_code == 201, answer.text
    on, stamp = answer.json()["columns"]
    assert (on["kind"], on["earliest"], on["latest"]) == ("date", "2020-01-01", "2020-01-30")
    assert stamp["kind"] == "date" and stamp["features"][-1] == "hour"
    assert stamp["earliest"] == "2021-05-01T00:00:00"          # stored in UTC, as written
    assert submit(api, answer.json()["id"], {
        "layers": [{"units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
        training={"epochs": 1}).status_code == 202


def test_bad_dates_and_raw_numbers_say_what_to_do(api, season):
    dataset, model, rows = season
    wrong = api.post(f"/v1/models/{model['id']}/predict", json={"inputs": [
        {**record(rows[0]), "day": "2024-02-30"}]})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "inputs[0].day"
    assert "ISO 8601" in wrong.json()["error"]["message"]
    raw = submit(api, dataset["id"], NETWORK, preprocessing={"mode": "none"}).json()["error"]
    assert raw["field"] == "preprocessing" and "'day'" in raw["message"]
    assert "auto" in raw["message"] and "numeric" in raw["message"]
