"""Real tables through real HTTP: the Palmer penguins CSV exactly as the `palmerpenguins` package
ships it (species, island and sex as text, NA for missing values, grams next to millimetres),
uploaded, trained with preprocessing "auto", and predicted from raw records."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.service.helpers import wait_for_job
from tests.service.table_helpers import (PENGUINS, csv_bytes, penguin_rows, raw_record,
                                         small_network, split_rows, submit, upload)

FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g",
            "sex", "year"]


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


def test_body_mass_regressed_like_a_scikit_learn_pipeline(api):
    """body_mass_g from the other columns, in grams: R^2 on held-out rows within 0.03 of
    scikit-learn's Pipeline(ColumnTransformer(impute + scale, impute + one-hot), MLPRegressor)
    with the same hidden layer, split, optimizer and epochs."""
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import r2_score
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    hidden, epochs, rate, batch = 32, 100, 0.01, 16
    train_rows, held_out = split_rows(penguin_rows())
    dataset = upload(api, csv_bytes(train_rows), target="body_mass_g")
    assert dataset["target"]["kind"] == "numeric" and dataset["target"]["rows_dropped"] == 1
    network = {"layers": [{"units": hidden, "activation": "relu"},
                          {"units": 1, "activation": "identity"}], "loss": "squared_error"}
    job = train(api, dataset["id"], network, epochs=epochs, learning_rate=rate,
                batch_size=batch)
    scored = [row for row in held_out if row["body_mass_g"] != "NA"]
    records = [raw_record(row) for row in scored]
    answer = api.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": records})
    assert answer.status_code == 200, answer.text
    truth = np.array([float(row["body_mass_g"]) for row in scored])
    ours = r2_score(truth, np.array(answer.json()["outputs"])[:, 0])   # grams, not z-scores

    frame = pd.read_csv(io.BytesIO(csv_bytes(train_rows))).dropna(subset=["body_mass_g"])
    text = ["species", "island", "sex"]
    numbers = [c for c in frame.columns if c not in text + ["body_mass_g"]]
    peer = make_pipeline(
        ColumnTransformer([
            ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
            ("text", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                   OneHotEncoder(handle_unknown="ignore")), text)]),
        MLPRegressor(hidden_layer_sizes=(hidden,), max_iter=epochs, batch_size=batch,
                     learning_rate_init=rate, alpha=0.0, random_state=0, tol=0,
                     n_iter_no_change=epochs + 1))
    with pytest.warns(Warning):  # it reports that max_iter ended the fit, as it should
        peer.fit(frame[numbers + text], frame["body_mass_g"])
    test_frame = pd.read_csv(io.BytesIO(csv_bytes(scored)))
    theirs = r2_score(truth, peer.predict(test_frame[numbers + text]))
    assert abs(ours - theirs) <= 0.03, (ours, theirs)
    assert ours > 0.75, ours


def test_job_submit_names_what_does_not_fit(api):
    dataset = upload(api, PENGUINS.read_bytes(), target="species")
    wrong = submit(api, dataset["id"], small_network(4)).json()["error"]
    assert wrong["status"] == 422 and wrong["field"] == "network.layers"
    assert "4 units" in wrong["message"] and "3 classes" in wrong["message"]
    regression = submit(api, dataset["id"], small_network(1, "squared_error")).json()["error"]
    assert regression["field"] == "network.loss" and "cross_entropy" in regression["message"]
    raw = submit(api, dataset["id"], small_network(3), preprocessing="none").json()["error"]
    assert raw["field"] == "preprocessing" and "island" in raw["message"]
    unknown = submit(api, dataset["id"], small_network(3),
                     preprocessing={"ignore": ["nope"]}).json()["error"]
    assert unknown["field"] == "preprocessing.ignore" and "nope" in unknown["message"]
    bad_mode = submit(api, dataset["id"], small_network(3), preprocessing="magic").json()
    assert bad_mode["error"]["status"] == 422 and "auto" in bad_mode["error"]["message"]


def test_columns_that_cannot_be_features_are_named_at_submit(api):
    rows = penguin_rows()
    for i, row in enumerate(rows):
        row["tag"] = f"penguin-{i}"                      # an id, unique per row
        row["seen"] = f"2008-11-{1 + i % 28:02d}"       # a date
    dataset = upload(api, csv_bytes(rows), target="species")
    columns = {c["name"]: c for c in dataset["columns"]}
    assert "id" in columns["tag"]["problem"]
    assert columns["seen"]["kind"] == "date" and columns["seen"]["problem"] is None
    refused = submit(api, dataset["id"], small_network(3)).json()["error"]
    assert refused["field"] == "preprocessing.ignore" and "'tag'" in refused["message"]
    assert "ignore" in refused["message"] and "seen" not in refused["message"]
    job = submit(api, dataset["id"], small_network(3), preprocessing={"ignore": ["tag"]})
    assert job.status_code == 202, job.text
    assert wait_for_job(api, job.json()["id"])["status"] == "succeeded"
    declared = upload(api, csv_bytes(rows), target="species", ignore="seen",
                      columns='{"tag": "ignored", "year": "categorical"}')
    kinds = {c["name"]: c["kind"] for c in declared["columns"]}
    assert (kinds["tag"], kinds["seen"], kinds["year"]) == ("ignored", "ignored", "categorical")
    assert submit(api, declared["id"], small_network(3)).status_code == 202


def test_json_records_and_parquet_upload_like_the_csv(api, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow.csv as pacsv

    from_csv = upload(api, PENGUINS.read_bytes(), target="species")
    records = [raw_record(row) for row in penguin_rows()]
    answer = api.post("/v1/datasets", json={"name": "penguins", "records": records,
                                            "target": "species"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["columns"] == from_csv["columns"]
    table = pacsv.read_csv(PENGUINS, convert_options=pacsv.ConvertOptions(
        null_values=["NA"], strings_can_be_null=True))
    pq.write_table(table, tmp_path / "penguins.parquet")
    parquet = api.post("/v1/datasets", data={"target": "species"}, files={
        "file": ("penguins.parquet", (tmp_path / "penguins.parquet").read_bytes())})
    assert parquet.status_code == 201, parquet.text
    assert parquet.json()["source"] == "parquet"
    assert parquet.json()["columns"] == from_csv["columns"]
    assert parquet.json()["sha256"] == from_csv["sha256"]


def test_numeric_arrays_are_standardized_and_regression_answers_in_target_units(api):
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[1000.0, -5.0], scale=[300.0, 0.01], size=(400, 2))
    y = 2000.0 + 3.0 * X[:, 0] + 50_000.0 * X[:, 1]
    dataset = api.post("/v1/datasets", json={"X": X.tolist(), "y": y.tolist()}).json()
    network = {"layers": [{"units": 1, "activation": "identity"}], "loss": "squared_error"}
    job = api.post("/v1/jobs", json={"dataset_id": dataset["id"], "network": network,
                                     "training": {"optimizer": "adam", "learning_rate": 0.05,
                                                  "epochs": 150, "batch_size": 32}})
    model_id = wait_for_job(api, job.json()["id"])["model_id"]
    answer = api.post(f"/v1/models/{model_id}/predict", json={"inputs": X[:50].tolist()})
    predicted = np.array(answer.json()["outputs"])[:, 0]
    assert np.abs(predicted - y[:50]).max() < 0.01 * np.abs(y).max(), predicted[:5]
    raw = api.post("/v1/jobs", json={"dataset_id": dataset["id"], "network": network,
                                     "preprocessing": "none", "training": {"epochs": 1}})
    assert raw.status_code == 202
    assert wait_for_job(api, raw.json()["id"])["status"] in ("succeeded", "failed")


@pytest.mark.parametrize("content,rows", [
    (b"a,b,label\r1,2,0\r3,4,1\r", 2),                                     # CR-only lines
    (b"a,b,label\n1," + b"x" * 200_000 + b",0\n2,y,1\n", 2),               # a 200,000-char field
    (",".join(f"c{i}" for i in range(4_000)).encode() + b"\n" * 500_000 + b"\n", 0),
    (b"\xef\xbb\xbfa,b,label\n1,2,0\n", 1),                                # UTF-8 BOM
], ids=["cr-only", "long-field", "wide-header-blank-lines", "bom"])
def test_awkward_csv_files_answer_json_never_500(api, content, rows):
    answer = api.post("/v1/datasets", files={"file": ("odd.csv", content)})
    if rows:
        assert answer.status_code == 201, answer.text
        assert answer.json()["n_samples"] == rows
        assert [c["name"] for c in answer.json()["columns"]] == ["a", "b"]
    else:
        assert answer.status_code == 422, answer.text
        assert "no data rows" in answer.json()["error"]["message"]


@pytest.mark.parametrize("content,words", [
    (b"a,b,a\n1,2,3\n", ["'a' appears twice"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00", ["UTF-8"]),
    (b"a,,label\n1,2,3\n", ["column 2 has no name"]),
], ids=["repeated-name", "binary", "blank-name"])
def test_csv_files_that_cannot_be_tables_are_named(api, content, words):
    answer = api.post("/v1/datasets", files={"file": ("odd.csv", content)},
                      data={"target": "label"} if b"label" in content else {})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "file"
    assert all(word in answer.json()["error"]["message"] for word in words), answer.text


def test_jobs_that_would_fail_in_the_worker_are_422_at_submit(api):
    """float64 data past float32's range trained as float32, and a validation split that
    leaves no training rows: refused at submit, naming the field, not failed by a worker."""
    huge = api.post("/v1/datasets", json={"X": [[1e300, 1.0], [-2e300, 2.0], [3.0, 1.0]],
                                          "y": [0, 1, 0], "dtype": "float64"}).json()
    network = small_network(2)
    raw = submit(api, huge["id"], network, preprocessing="none").json()["error"]
    assert raw["field"] == "dtype" and "float32" in raw["message"] and "2e+300" in raw["message"]
    assert submit(api, huge["id"], network, preprocessing="none", dtype="float64"
                  ).status_code == 202
    standardized = submit(api, huge["id"], network)      # "auto" standardizes in float64
    assert standardized.status_code == 202
    assert wait_for_job(api, standardized.json()["id"])["status"] == "succeeded"
    split = api.post("/v1/jobs", json={"dataset_id": huge["id"], "network": network,
                                       "training": {"validation_split": 0.9}}).json()["error"]
    assert split["field"] == "training.validation_split" and "3 rows" in split["message"]


def dated_csv(rows: int = 24) -> bytes:
    lines = ["when,name,empty,x,label"]
    for i in range(rows):
        lines.append(f"{1980 + i}-01-0{1 + i % 9},p{i},,{i % 5},{'ab'[i % 2]}")
    return ("\n".join(lines) + "\n").encode()


def test_a_date_declared_numeric_is_days_since_1970(api):
    dataset = upload(api, dated_csv(), target="label", columns='{"when": "numeric"}',
                     ignore="name,empty")
    when = {c["name"]: c for c in dataset["columns"]}["when"]
    assert when["kind"] == "numeric" and when["min"] == 3652.0   # 1980-01-01
    assert submit(api, dataset["id"], small_network(2)).status_code == 202


def test_every_problem_column_in_one_answer_and_ignored_columns_are_none(api):
    dataset = upload(api, dated_csv(), target="label")
    columns = {c["name"]: c for c in dataset["columns"]}
    assert columns["when"]["kind"] == "date" and columns["when"]["earliest"] == "1980-01-01"
    refused = submit(api, dataset["id"], small_network(2)).json()["error"]
    assert refused["field"] == "preprocessing.ignore"
    assert "'name'" in refused["message"] and "'empty'" in refused["message"]
    assert "'when'" not in refused["message"]            # the schema ignores it already
    assert '["name", "empty"]' in refused["message"]
    fixed = submit(api, dataset["id"], small_network(2),
                   preprocessing={"mode": "auto", "ignore": ["name", "empty"]})
    assert fixed.status_code == 202, fixed.text
