"""Jobs with only a dataset (defaults resolved from the data), honest metrics of the kept epoch,
and POST /v1/models/{id}/evaluate, on real tables through real HTTP and real workers: wine,
breast cancer and diabetes as scikit-learn ships them, and the Palmer penguins CSV (text
columns, NA). Each default model is held to scikit-learn's default MLP in the same imputing,
scaling and one-hot Pipeline, fitted on the same rows in the same test."""

from __future__ import annotations

import warnings

import httpx
import numpy as np
import palmerpenguins
import pandas as pd
import pytest
from sklearn import datasets, metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.service.helpers import wait_for_job

TEST_FRACTION = 0.3


def penguins() -> pd.DataFrame:
    return palmerpenguins.load_penguins()


TABLES = {
    # name: (frame, target, task)
    "wine": (lambda: datasets.load_wine(as_frame=True).frame, "target", "classification"),
    "breast_cancer": (lambda: datasets.load_breast_cancer(as_frame=True).frame, "target",
                      "classification"),
    "diabetes": (lambda: datasets.load_diabetes(as_frame=True, scaled=False).frame, "target",
                 "regression"),
    "penguins": (penguins, "species", "classification"),
}


def held_out(frame: pd.DataFrame, target: str, seed: int = 0):
    """(training rows, test rows) of a table; rows without a target left out."""
    frame = frame[frame[target].notna()].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(len(frame) * (1 - TEST_FRACTION))
    return frame.iloc[order[:cut]].reset_index(drop=True), \
        frame.iloc[order[cut:]].reset_index(drop=True)


def csv_of(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, na_rep="NA").encode()


def records_of(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
             for k, v in row.items()} for row in frame.to_dict(orient="records")]


def sklearn_default(train: pd.DataFrame, test: pd.DataFrame, target: str, task: str):
    """scikit-learn's default MLP in the usual Pipeline: impute and scale numbers, impute and
    one-hot text; its held-out score (accuracy or R^2)."""
    features = [c for c in train.columns if c != target]
    text = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
    numbers = [c for c in features if c not in text]
    prepare = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        ("text", make_pipeline(SimpleImputer(strategy="most_frequent"),
                               OneHotEncoder(handle_unknown="ignore")), text)])
    model = MLPClassifier(random_state=0) if task == "classification" else \
        MLPRegressor(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = make_pipeline(prepare, model).fit(train[features], train[target])
    return fitted.score(test[features], test[target])


def upload(api, frame: pd.DataFrame, target: str, name: str) -> dict:
    answer = api.post("/v1/datasets", files={"file": (f"{name}.csv", csv_of(frame))},
                      data={"target": target, "name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()


def train_default(api, dataset_id: str, **fields) -> dict:
    job = api.post("/v1/jobs", json={"dataset_id": dataset_id, "seed": 0, **fields})
    assert job.status_code == 202, job.text
    done = wait_for_job(api, job.json()["id"], timeout_s=300)
    assert done["status"] == "succeeded", done
    return done


@pytest.fixture(scope="module")
def trained(stack) -> dict:
    """Per table: its rows, and the default job and model trained on 70% of them."""
    with httpx.Client(base_url=stack.url, timeout=60) as api:
        return train_tables(api)


def train_tables(api) -> dict:
    found = {}
    for name, (load, target, task) in TABLES.items():
        train, test = held_out(load(), target)
        dataset = upload(api, train, target, name)
        job = train_default(api, dataset["id"])
        model = api.get(f"/v1/models/{job['model_id']}").json()
        found[name] = {"train": train, "test": test, "target": target, "task": task,
                       "dataset": dataset, "job": job, "model": model}
    return found


def predicted(api, model_id: str, test: pd.DataFrame, target: str) -> dict:
    inputs = records_of(test.drop(columns=[target]))
    answer = api.post(f"/v1/models/{model_id}/predict", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    return answer.json()


def expected_metrics(task: str, test: pd.DataFrame, target: str, answer: dict,
                     classes: list) -> dict:
    """The metrics scikit-learn computes from /predict's answer."""
    outputs = np.asarray(answer["outputs"], dtype=np.float64)
    truth = test[target].to_numpy()
    if task == "regression":
        return {"r2": skm.r2_score(truth, outputs[:, 0]),
                "rmse": np.sqrt(skm.mean_squared_error(truth, outputs[:, 0])),
                "mae": skm.mean_absolute_error(truth, outputs[:, 0])}
    y = np.array([classes.index(v) for v in truth.tolist()])
    predicted_ = outputs.argmax(axis=1)
    found = {"accuracy": skm.accuracy_score(y, predicted_),
             "balanced_accuracy": skm.balanced_accuracy_score(y, predicted_),
             "log_loss": skm.log_loss(y, outputs, labels=list(range(len(classes)))),
             "f1_macro": skm.f1_score(y, predicted_, average="macro")}
    if len(classes) == 2:
        found["roc_auc"] = skm.roc_auc_score(y, outputs[:, 1])
    return found


@pytest.mark.parametrize("name", list(TABLES))
def test_a_job_with_only_a_dataset_scores_like_scikit_learns_default_mlp(trained, api, name):
    table = trained[name]
    test, target, task = table["test"], table["target"], table["task"]
    answer = api.post(f"/v1/models/{table['model']['id']}/evaluate",
                      json={"records": records_of(test)})
    assert answer.status_code == 200, answer.text
    ours = answer.json()["metrics"]["accuracy" if task == "classification" else "r2"]
    theirs = sklearn_default(table["train"], test, target, task)
    print(f"{name}: default job {ours:.3f}, scikit-learn's default MLP {theirs:.3f}")
    assert ours >= theirs - (0.03 if task == "classification" else 0.05), (ours, theirs)


def test_the_job_record_shows_the_resolved_spec(trained):
    job, model = trained["penguins"]["job"], trained["penguins"]["model"]
    training, network = job["training"], job["network"]
    assert training["optimizer"] == "adam" and training["validation_split"] == 0.1
    assert training["early_stopping"]["restore_best"] is True
    assert training["epochs"] == 200 and training["seed"] == 0
    assert [layer["units"] for layer in network["layers"]] == [100, 3]
    assert network["loss"] == "cross_entropy" and network["layers"][-1]["activation"] == "softmax"
    assert network["init"]["scheme"] == "he"
    diabetes = trained["diabetes"]["job"]["network"]
    assert (diabetes["loss"], diabetes["layers"][-1]) == (
        "squared_error", {"units": 1, "activation": "identity"})
    assert model["classes"] == ["Adelie", "Chinstrap", "Gentoo"]


@pytest.mark.parametrize("name", ["wine", "diabetes"])
def test_metrics_are_those_of_the_kept_epoch(trained, api, name):
    job, model = trained[name]["job"], trained[name]["model"]
    history = api.get(f"/v1/jobs/{job['id']}/history").json()
    kept = job["kept_epoch"]
    assert kept == model["kept_epoch"] == history["kept_epoch"]
    assert 1 <= kept <= len(history["epochs"])
    record = history["epochs"][kept - 1]
    assert record["epoch"] == kept
    assert record["val_loss"] == min(r["val_loss"] for r in history["epochs"])
    for key in ("loss", "val_loss", "metric", "val_metric"):
        assert job["metrics"][key] == model["metrics"][key] == record[key]
    if name == "diabetes":
        assert record["val_rmse"] > 10 and record["val_mae"] > 10      # the target's units
        assert job["metrics"]["val_rmse"] == record["val_rmse"]


def test_the_kept_epochs_validation_score_is_the_models(trained, api):
    """The stored val_metric describes the stored weights: recompute it on the validation rows
    (engine.split_rows with the job's seed) through /predict."""
    import engine

    table = trained["wine"]
    train, target = table["train"], table["target"]
    _, val_rows = engine.split_rows(len(train), 0.1, 0)
    rows = train.iloc[val_rows]
    answer = predicted(api, table["model"]["id"], rows, target)
    accuracy = np.mean(np.asarray(answer["labels"]) == rows[target].to_numpy())
    assert table["job"]["metrics"]["val_metric"] == pytest.approx(accuracy)


@pytest.mark.parametrize("name", list(TABLES))
def test_evaluate_answers_the_metrics_of_predicts_outputs(trained, api, name):
    table = trained[name]
    test, target, task, model = table["test"], table["target"], table["task"], table["model"]
    classes = model["classes"]
    expected = expected_metrics(task, test, target, predicted(api, model["id"], test, target),
                                classes)
    by_records = api.post(f"/v1/models/{model['id']}/evaluate",
                          json={"records": records_of(test)})
    by_csv = api.post(f"/v1/models/{model['id']}/evaluate", content=csv_of(test),
                      headers={"content-type": "text/csv"})
    test_set = upload(api, test, target, f"{name}-test")
    by_dataset = api.post(f"/v1/models/{model['id']}/evaluate",
                          json={"dataset_id": test_set["id"]})
    for answer in (by_records, by_csv, by_dataset):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["n_rows"] == len(test)
        for key, value in expected.items():
            assert body["metrics"][key] == pytest.approx(value, abs=1e-6), key
        if task == "classification":
            predicted_ = np.asarray(predicted(api, model["id"], test, target)["outputs"]
                                    ).argmax(axis=1)
            y = [classes.index(v) for v in test[target].tolist()]
            assert body["confusion_matrix"] == {
                "labels": classes,
                "counts": skm.confusion_matrix(y, predicted_,
                                               labels=list(range(len(classes)))).tolist()}
            assert set(body["metrics"]["precision"]) == {str(c) for c in classes}
        else:
            assert body["confusion_matrix"] is None


def test_evaluate_refuses_bad_bodies_naming_the_fix(trained, api):
    model_id = trained["penguins"]["model"]["id"]
    test = trained["penguins"]["test"]
    url = f"/v1/models/{model_id}/evaluate"
    no_target = api.post(url, json={"records": records_of(test.drop(columns=["species"]))})
    assert no_target.status_code == 422 and "target column 'species'" in no_target.text
    odd = records_of(test.head(3))
    odd[1]["species"] = "Emperor"
    unknown = api.post(url, json={"records": odd})
    assert unknown.status_code == 422 and "'Emperor' is not a class" in unknown.text
    assert unknown.json()["error"]["field"] == "records[].species[1]"
    both = api.post(url, json={"records": odd, "dataset_id": "ds_x"})
    assert both.status_code == 422 and "one of" in both.text
    csv_without = api.post(url, content=csv_of(test.drop(columns=["species"])),
                           headers={"content-type": "text/csv"})
    assert csv_without.status_code == 422 and "no target column 'species'" in csv_without.text
    assert api.post(url, content=b"x", headers={"content-type": "image/png"}).status_code == 415
    wine_set = trained["wine"]["dataset"]["id"]
    other = api.post(url, json={"dataset_id": wine_set})
    assert other.status_code == 422 and "lacks the model's column" in other.text
    missing = api.post("/v1/models/mdl_AAAAAAAAAAAAAAAA/evaluate", json={"dataset_id": "x"})
    assert missing.status_code == 404


def test_test_split_scores_and_feature_importance_are_stored_with_the_model(trained, api):
    table = trained["penguins"]
    job = train_default(api, table["dataset"]["id"], training={
        "optimizer": "adam", "learning_rate": 0.01, "epochs": 60, "batch_size": 16,
        "validation_split": 0.2, "test_split": 0.25, "seed": 1,
        "early_stopping": {"patience": 10}})
    model = api.get(f"/v1/models/{job['model_id']}").json()
    n_rows = table["dataset"]["n_samples"]
    assert model["test_rows"] == round(n_rows * 0.25)
    assert 0.8 <= model["test_metrics"]["accuracy"] <= 1
    assert sum(map(sum, model["test_confusion_matrix"]["counts"])) == model["test_rows"]
    importance = {f["column"]: f["importance"] for f in model["feature_importance"]}
    assert model["importance_rows"] == "test"
    # Per raw column (island and sex one-hot over several units count once), every feature.
    assert set(importance) == {"island", "bill_length_mm", "bill_depth_mm",
                               "flipper_length_mm", "body_mass_g", "sex", "year"}
    # Bill length is what tells Chinstrap from Adelie: no other column can replace it.
    assert importance["bill_length_mm"] == max(importance.values()) > 0.05


def test_validation_rows_give_the_importance_without_a_test_split(trained):
    model = trained["breast_cancer"]["model"]
    assert model["importance_rows"] == "validation" and model["test_metrics"] is None
    assert len(model["feature_importance"]) == 30


def test_training_metric_and_class_weight(trained, api):
    table = trained["penguins"]
    dataset_id = table["dataset"]["id"]
    wrong = api.post("/v1/jobs", json={"dataset_id": dataset_id,
                                       "training": {"metric": "rmse"}})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "training.metric"
    assert "accuracy, f1_macro, log_loss" in wrong.text
    unknown = api.post("/v1/jobs", json={"dataset_id": dataset_id,
                                         "training": {"class_weight": {"Emperor": 2}}})
    assert unknown.status_code == 422 and "'Emperor'" in unknown.text
    assert api.post("/v1/jobs", json={"dataset_id": dataset_id,
                                      "training": {"metric": "auc"}}).status_code == 422
    job = train_default(api, dataset_id, training={
        "optimizer": "adam", "learning_rate": 0.01, "epochs": 40, "validation_split": 0.2,
        "metric": "f1_macro", "class_weight": {"Chinstrap": 2.0},
        "early_stopping": {"patience": 5}})
    assert job["training"]["early_stopping"]["monitor"] == "val_metric"
    history = api.get(f"/v1/jobs/{job['id']}/history").json()["epochs"]
    assert all(r["metric_name"] == "f1_macro" for r in history)
    f1 = [r["val_metric"] for r in history]
    assert job["kept_epoch"] == f1.index(max(f1)) + 1
    assert job["metrics"]["val_metric"] == max(f1)


def test_the_dashboard_shows_the_kept_epoch_and_feature_importance(api):
    """The page's script reads what the API now answers (no browser here: the wiring only)."""
    script = api.get("/static/dashboard.js").text
    assert "kept epoch ${job.kept_epoch} of ${epoch}" in script
    assert "model.feature_importance" in api.get("/static/model.js").text
    assert 'id="detail-model"' in api.get("/").text  # drawn: tests/service/test_dashboard.py
