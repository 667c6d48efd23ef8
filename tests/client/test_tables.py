"""Tables through the client: DataFrames and dict records in, names out, CSV files scored.

The helpers that shape a table for the API are checked here directly, then round trips through
the live service."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest

import backprop_client.client
from backprop_client import Client
from backprop_client import tables
from tests.client.helpers import backprop, client_cli

SPECIES = ("Adelie", "Chinstrap", "Gentoo")


def penguins_like(n: int, seed: int) -> pd.DataFrame:
    """A small table shaped like palmerpenguins: text columns, grams next to millimetres,
    missing values, a per-row id that must not serve as a feature."""
    rng = np.random.default_rng(seed)
    kind = np.arange(n) % 3
    frame = pd.DataFrame({
        "id": [f"p{seed}-{i}" for i in range(n)],
        "species": np.array(SPECIES)[kind],
        "island": np.array(["Torgersen", "Dream", "Biscoe"])[kind],
        "bill_length_mm": np.array([38.8, 48.8, 47.5])[kind] + rng.normal(0, 1.0, n),
        "bill_depth_mm": np.array([18.3, 18.4, 15.0])[kind] + rng.normal(0, 0.5, n),
        "body_mass_g": np.array([3700.0, 3730.0, 5080.0])[kind] + rng.normal(0, 150, n),
        "sex": rng.choice(["male", "female"], n).astype(object),
        "year": rng.choice([2007, 2008, 2009], n),
    })
    frame.loc[rng.random(n) < 0.05, "bill_depth_mm"] = np.nan
    frame.loc[rng.random(n) < 0.05, "sex"] = None
    return frame


# -- shaping tables for the API (no service needed) --------------------------------------------
def test_a_dataframe_becomes_json_records_with_null_for_missing():
    frame = pd.DataFrame({"a": [1.5, np.nan], "b": pd.array([1, None], dtype="Int64"),
                          "c": ["x", None], "d": np.array([3, 4], dtype=np.int64)})
    rows = tables.records(frame)
    assert rows == [{"a": 1.5, "b": 1, "c": "x", "d": 3}, {"a": None, "b": None, "c": None, "d": 4}]
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    assert tables.records({"a": np.float32("nan")}) == [{"a": None}]
    assert tables.records(np.zeros((2, 3))) is None and tables.records([[1.0, 2.0]]) is None


def test_datetimes_become_iso_text_and_nat_is_missing():
    frame = pd.DataFrame({"day": pd.to_datetime(["2024-01-31", None]),
                          "at": pd.to_datetime(["2024-01-31 13:45:00", "2024-02-01 00:00:00"]),
                          "zoned": pd.to_datetime(["2024-01-31 13:45", "2024-02-01 00:00"]
                                                  ).tz_localize("Europe/Oslo")})
    rows = tables.records(frame)
    assert rows[0] == {"day": "2024-01-31T00:00:00", "at": "2024-01-31T13:45:00",
                       "zoned": "2024-01-31T13:45:00+01:00"}
    assert rows[1]["day"] is None
    assert tables.plain(np.datetime64("2024-01-31T13:45")) == "2024-01-31T13:45"
    assert tables.plain(np.datetime64("NaT")) is None
    assert b"2024-01-31 13:45:00" in tables.dataframe_csv(frame[["at"]])


def test_record_bodies_stay_below_the_row_and_byte_limits():
    rows = [{"island": "Biscoe", "mass": float(i)} for i in range(25)]
    envelope = len('{"inputs": []}')
    for max_bytes, max_rows, pieces in ((1 << 20, 10, 3), (100, 1000, 13), (1, 1000, 25)):
        bodies = list(tables.records_bodies(rows, max_bytes, max_rows))
        inputs = [json.loads(body)["inputs"] for body in bodies]
        assert len(bodies) == pieces and [row for part in inputs for row in part] == rows
        assert all(len(part) <= max_rows for part in inputs)
        assert all(len(body) <= max_bytes + envelope or len(part) == 1
                   for body, part in zip(bodies, inputs))
    assert [json.loads(b) for b in tables.records_bodies([], 100, 10)] == [{"inputs": []}]


def test_csv_bodies_cut_at_row_ends_and_repeat_the_header(tmp_path):
    path = tmp_path / "quoted.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "note"])
        writer.writerows([[f"r{i}", f"line one, {i}\nline two"] for i in range(10)])
    pieces = list(tables.csv_bodies(path, 1 << 20, 3))
    assert [rows for _, rows in pieces] == [3, 3, 3, 1]
    parsed = [list(csv.reader(io.StringIO(body.decode()))) for body, _ in pieces]
    assert all(piece[0] == ["name", "note"] for piece in parsed)
    with open(path, newline="") as f:
        assert [row for piece in parsed for row in piece[1:]] == list(csv.reader(f))[1:]
    (tmp_path / "header.csv").write_text("a,b\n")
    assert list(tables.csv_bodies(tmp_path / "header.csv", 100, 10)) == [(b"a,b\n", 0)]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="needs a header row"):
        list(tables.csv_bodies(tmp_path / "empty.csv", 100, 10))


def test_upload_form_fields_of_a_table():
    assert tables.table_form(["species"], ["id", "year"], {"year": "categorical"}) == {
        "target": "species", "ignore": "id,year", "columns": '{"year": "categorical"}'}
    assert tables.table_form("species", "id", None) == {"target": "species", "ignore": "id"}
    assert tables.dataframe_csv(pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None]})) == \
        b"a,b\n1.0,x\n,\n"


# -- round trips through a service with table support ------------------------------------------
NETWORK = {"layers": [{"units": 16, "activation": "relu"}, {"units": 3, "activation": "softmax"}],
           "loss": "cross_entropy", "init": {"scheme": "he"}}
TRAINING = {"optimizer": "adam", "learning_rate": 0.01, "epochs": 60, "batch_size": 16, "seed": 3}


def kinds(schema) -> dict[str, str]:
    """{column: kind} from a dataset's `columns` (a list of {"name", "kind", ...} or a dict)."""
    if isinstance(schema, dict):
        return {name: column["kind"] for name, column in schema.items()}
    return {column["name"]: column["kind"] for column in schema}


@pytest.fixture(scope="module")
def penguins(stack):
    """A model trained from a DataFrame: (client, job, model, held-out frame)."""
    train, held_out = penguins_like(240, seed=1), penguins_like(60, seed=2)
    with Client(stack.url) as client:
        job = client.train(NETWORK, TRAINING, X=train, target="species", ignore=["id"],
                           columns={"year": "categorical"})
        yield client, job.wait(progress=False, timeout=120), job.model(), held_out


def test_a_dataframe_upload_records_its_schema(penguins):
    client, job, _, _ = penguins
    dataset = client.dataset(job.info["dataset_id"])
    assert "species" in json.dumps(dataset["target"])
    columns = kinds(dataset["columns"])
    assert columns["id"] == "ignored" and columns["year"] == "categorical"
    assert columns["island"] == "categorical" and columns["body_mass_g"] == "numeric"


def test_a_model_from_a_table_predicts_names_from_dataframes_and_records(penguins):
    _, job, model, held_out = penguins
    assert job.status == "succeeded"
    assert sorted(model.classes) == list(SPECIES)
    assert {"island", "body_mass_g", "sex"} <= set(json.dumps(model.input_columns).split('"'))
    outputs, labels = model.predict(held_out), model.predict_labels(held_out)
    assert outputs.shape == (60, 3) and labels.dtype == object
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, rtol=1e-5)
    assert labels.tolist() == np.array(model.classes)[outputs.argmax(axis=1)].tolist()
    assert all(isinstance(label, str) for label in labels)
    assert (labels == held_out["species"].to_numpy()).mean() >= 0.9
    records = held_out.head(5).drop(columns=["species"]).to_dict("records")
    np.testing.assert_allclose(model.predict(records), outputs[:5], atol=1e-6)
    odd = [{"island": "Atlantis", "bill_length_mm": 39.0, "sex": None},  # unseen, missing
           {"bill_length_mm": 48.0, "body_mass_g": float("nan")}]       # keys left out
    assert model.predict(odd).shape == (2, 3) and len(model.predict_labels(odd)) == 2


def test_a_csv_file_is_scored_in_pieces_and_by_both_commands(penguins, stack, tmp_path,
                                                            monkeypatch):
    _, _, model, held_out = penguins
    path = tmp_path / "held_out.csv"
    held_out.to_csv(path, index=False)  # NaN as empty cells
    whole = b"".join(answer for answer, _ in model.predict_csv(path))
    monkeypatch.setattr(backprop_client.client, "PREDICT_CHUNK_ROWS", 7)
    pieces = list(model.predict_csv(path))
    assert [rows for _, rows in pieces] == [7] * 8 + [4]
    scored = parse_scored(b"".join(answer for answer, _ in pieces), held_out)
    assert_same_scores(scored, parse_scored(whole, held_out))
    header, labels, probabilities = scored
    assert labels == model.predict_labels(held_out).tolist()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    out = tmp_path / "scored.csv"
    done = client_cli("predict", model.id, str(path), "--output", str(out), url=stack.url)
    assert done.returncode == 0, done.stderr
    assert f"wrote 60 predictions of model {model.id}" in done.stderr
    assert_same_scores(parse_scored(out.read_bytes(), held_out), scored)
    to_stdout = backprop("predict", model.id, str(path), url=stack.url)
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert_same_scores(parse_scored(to_stdout.stdout.encode(), held_out), scored)


def parse_scored(answer: bytes, rows: pd.DataFrame) -> tuple[list[str], list[str], np.ndarray]:
    """(header, labels, probabilities (n, classes)) of a scored CSV, after checking that it
    holds the input columns first and then one label and three probability columns."""
    scored = list(csv.reader(io.StringIO(answer.decode())))
    header, body, width = scored[0], scored[1:], len(rows.columns)
    assert header[:width] == list(rows.columns) and len(header) == width + 1 + 3, header
    assert [row[0] for row in body] == rows["id"].tolist()
    return (header, [row[width] for row in body],
            np.array([row[width + 1:] for row in body], dtype=np.float64))


def assert_same_scores(got: tuple, expected: tuple) -> None:
    """Equal but for float rounding: pieces of other sizes round other ways in the GEMMs."""
    assert got[:2] == expected[:2]
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-5, atol=1e-7)
