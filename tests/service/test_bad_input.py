"""Hostile and careless input, sent over HTTP to the real stack: every endpoint answers a 4xx
whose JSON error names the field to fix, never a 5xx; ids are random and unknown ones are 404s."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.helpers import classifier, npy_bytes, npz_bytes, trained_records

NETWORK = classifier(hidden=4, classes=3)
INLINE = {"X": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], "y": [0, 1, 2]}


def assert_refused(answer: httpx.Response, status: int, field: str | None) -> dict:
    """A JSON error with this status, naming `field` both as `error.field` and in the message."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    error = answer.json()["error"]
    assert error["status"] == status and error["message"], error
    if field is not None:
        assert error.get("field") == field, error
        assert field in error["message"], error
    return error


@pytest.fixture(scope="module")
def trained(stack) -> dict:
    """A dataset and a finished 3-class job (2 inputs) with its model, on the shared stack."""
    X = np.array([[0, 1], [1, 0], [1, 1], [0, 0]] * 5, dtype=np.float32)
    y = np.arange(20) % 3
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        return train(api, X, y)


def train(api: httpx.Client, X: np.ndarray, y: np.ndarray) -> dict:
    ids = trained_records(api, X, y, NETWORK)
    return {"dataset": ids["dataset_id"], "job": ids["job_id"], "model": ids["model_id"]}


# -- malformed bodies, on every endpoint that takes one ----------------------------------------
BODY_ENDPOINTS = ["/v1/datasets", "/v1/jobs", "/v1/models/{model}/predict"]


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
@pytest.mark.parametrize("raw", [b'{"X": [[1, 2]', b"", b"\x00\xff\xfe", b"[[[" * 5000,
                                 b"nul", b"{'X': 1}"], ids=["truncated", "empty", "binary",
                                                            "deep", "nul", "single-quotes"])
def test_malformed_json_is_422_naming_the_body(api, trained, path, raw):
    answer = api.post(path.format(**trained), content=raw,
                      headers={"Content-Type": "application/json"})
    assert_refused(answer, 422, "body")


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
@pytest.mark.parametrize("body", [[1, 2], "text", 3, None], ids=["list", "string", "number",
                                                                  "null"])
def test_a_body_that_is_not_an_object_is_422(api, trained, path, body):
    answer = api.post(path.format(**trained), content=json.dumps(body),
                      headers={"Content-Type": "application/json"})
    assert_refused(answer, 422, None)


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_an_unreadable_content_type_is_415(api, trained, path):
    answer = api.post(path.format(**trained), content=b"X=1",
                      headers={"Content-Type": "text/plain"})
    assert_refused(answer, 415, None)


def test_a_broken_multipart_upload_is_422(api):
    answer = api.post("/v1/datasets", content=b"--b\r\nFalse--b--\r\n",
                      headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert_refused(answer, 422, "body")


# -- datasets ------------------------------------------------------------------------------------
DATASET_CASES = [
    ({"X": [[1, 2]]}, "y"),                                   # missing field
    ({"y": [1]}, "X"),
    ({"X": "abc", "y": [1]}, "X"),                            # wrong types
    ({"X": [[1, "b"]], "y": [1]}, "X[0][1]"),
    ({"X": [[1, None]], "y": [1]}, "X[0][1]"),               # not NaN: null is no number
    ({"X": [[1, 2]], "y": ["a"]}, "y[0]"),
    ({"X": [[1, 2]], "y": [1], "name": 5}, "name"),
    ({"X": [[1, 2]], "y": [1], "dtype": "float16"}, "dtype"),  # unknown name
    ({"X": [[1, 2]], "y": [1], "labels": [1]}, "labels"),      # unknown field
    ({"X": [], "y": []}, "X"),                                 # empty
    ({"X": [[]], "y": [1]}, "X"),
    ({"X": [[1, 2], [3]], "y": [1, 2]}, "X"),                  # ragged
    ({"X": [[1, 2], [3, 4]], "y": [[1], [2, 3]]}, "y"),
    ({"X": [[1, 2], [3, 4]], "y": [1]}, "y"),                  # rows do not match
    ({"X": [[1e39, 2]], "y": [1]}, "X"),                       # too big for float32
]


@pytest.mark.parametrize("body,field", DATASET_CASES)
def test_dataset_json_is_checked_field_by_field(api, body, field):
    assert_refused(api.post("/v1/datasets", json=body), 422, field)


@pytest.mark.parametrize("raw,field", [
    (b'{"X": [[1, NaN]], "y": [1]}', "X"),
    (b'{"X": [[1, Infinity]], "y": [1]}', "X"),
    (b'{"X": [[1, -Infinity]], "y": [1]}', "X"),
    (b'{"X": [[1, 1e400]], "y": [1]}', "X"),
    (b'{"X": [[1, 2]], "y": [NaN]}', "y"),
], ids=["NaN", "Infinity", "-Infinity", "1e400", "NaN-target"])
def test_non_finite_json_numbers_are_refused_naming_the_field(api, raw, field):
    error = assert_refused(api.post("/v1/datasets", content=raw,
                                    headers={"Content-Type": "application/json"}), 422, field)
    assert "NaN or infinite" in error["message"]


@pytest.mark.parametrize("csv,field", [
    (b"a,b,label\n1,inf,0\n", "b"),
    (b"a,b,label\n1,1e400,0\n", "b"),
    (b"a,b,label\n1,2\n", "file"),                  # ragged
    (b"a,b,label\n", "file"),                       # header only
    (b"", "file"),
    (b"\xff\xfe\x00", "file"),                      # not text
])
def test_bad_csv_uploads_are_422(api, csv, field):
    assert_refused(api.post("/v1/datasets", files={"file": ("d.csv", csv)}), 422, field)


def test_a_csv_target_that_is_not_a_column_is_422(api):
    answer = api.post("/v1/datasets", files={"file": ("d.csv", b"a,b\n1,2\n")},
                      data={"target": "label"})
    assert_refused(answer, 422, "target")


@pytest.mark.parametrize("arrays,field", [
    ({"X": np.zeros((0, 3)), "y": np.zeros(0)}, "X"),
    ({"X": np.zeros((4, 0)), "y": np.zeros(4)}, "X"),
    ({"X": np.zeros(4), "y": np.zeros(4)}, "X"),
    ({"X": np.zeros((4, 2)), "y": np.zeros((4, 0))}, "y"),
    ({"X": np.full((2, 2), np.nan), "y": np.zeros(2)}, "X"),
    ({"X": np.array([["a", "b"]]), "y": np.zeros(1)}, "X"),
    ({"X": np.zeros((4, 2))}, "file"),
])
def test_bad_npz_uploads_are_422(api, arrays, field):
    answer = api.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(**arrays))})
    assert_refused(answer, 422, field)


def test_an_npz_with_pickled_object_arrays_is_refused_unread(api, tmp_path):
    """np.savez pickles object arrays; loading them would run the sender's code."""
    marker = tmp_path / "unpickled"
    evil = np.array([Boom(str(marker)), 1], dtype=object)
    answer = api.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=evil, y=evil))})
    error = assert_refused(answer, 422, "X")
    assert "pickle" in error["message"].lower() or "object" in error["message"].lower(), error
    assert not marker.exists()


class Boom:
    """Pickles to a call of Path.touch: unpickling it would create the marker file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_wrong_dtype_form_field_is_422(api):
    answer = api.post("/v1/datasets", files={"file": ("d.csv", b"a,label\n1,0\n")},
                      data={"dtype": "int8"})
    assert_refused(answer, 422, "dtype")


# -- jobs ------------------------------------------------------------------------------------------
def job(**changes) -> dict:
    body = {"network": json.loads(json.dumps(NETWORK)), "data": dict(INLINE),
            "training": {"epochs": 1}}
    body.update(changes)
    return body


JOB_CASES = [
    # A job without a network is valid: the service picks one (test_defaults_evaluate.py).
    (job(training={"metric": "r2"}), "training.metric"),                      # not for classes
    (job(training={"class_weight": {"9": 2.0}}), "training.class_weight"),    # no class 9
    (job(network={"layers": [{"units": 3, "activation": "relux"}], "loss": "cross_entropy"}),
     "network.layers[0].activation"),
    (job(network={"layers": [{"units": 3, "activation": "softmax"}], "loss": "mse"}),
     "network.loss"),
    (job(network={"layers": [{"units": "3", "activation": "softmax"}] * 0, "loss": "huber"}),
     "network.layers"),
    (job(network={"layers": [{"units": "x", "activation": "softmax"}],
                  "loss": "cross_entropy"}), "network.layers[0].units"),
    (job(network={"layers": [{"units": 0, "activation": "softmax"}],
                  "loss": "cross_entropy"}), "network.layers[0].units"),
    (job(network={**NETWORK, "init": {"distribution": "cauchy"}}), "network.init.distribution"),
    (job(training={"optimizer": "adamw"}), "training.optimizer"),
    (job(training={"schedule": {"name": "cyclic"}}), "training.schedule.name"),
    (job(training={"epochs": "ten"}), "training.epochs"),
    (job(training={"learning_rate": -1}), "training.learning_rate"),
    (job(training={"batch_size": 0}), "training.batch_size"),
    (job(training={"early_stopping": {"monitor": "accuracy"}}),
     "training.early_stopping.monitor"),
    (job(device="tpu"), "device"),
    (job(dtype="float16"), "dtype"),
    (job(seed=-1), "seed"),
    (job(seed=10**30), "seed"),
    (job(training={"epochs": 1, "seed": -1}), "training.seed"),
    (job(colour="red"), "colour"),                                            # unknown field
    (job(data={"X": [], "y": []}), "data.X"),                                 # empty
    (job(data={"X": [[1, 2], [3]], "y": [0, 1]}), "data.X"),                  # ragged
    (job(data={"X": [[1, 2]], "y": [0, 1]}), "data.y"),
    (job(data={"X": [[1e39, 2]], "y": [0]}), "data.X"),                      # float32 overflow
    (job(data={"X": [[1, 2], [3, 4]], "y": [0, 7]}), "network.layers"),      # 2 classes, 3 units
    (job(data={"X": [[1, 2], [3, 4]], "y": [0, 0.5]}), "network.loss"),      # not a label
    (job(data={"X": [[1, 2], [3, 4]], "y": [0, 7]}, preprocessing="none"), "data.y"),
    (job(data={"X": [[1, 2]], "y": [[0, 1]]}), "data.y"),                    # one-hot width
    (job(network={"layers": [{"units": 1, "activation": "sigmoid"}],
                  "loss": "binary_cross_entropy"}, data={"X": [[1, 2]], "y": [3]}), "data.y"),
    (job(data=None, dataset_id="ds_doesnotexist"), "dataset_id"),
    (job(dataset_id="ds_x"), "dataset_id"),                                   # both
    (job(data=None), "dataset_id"),                                           # neither
]


@pytest.mark.parametrize("body,field", JOB_CASES)
def test_job_submissions_are_checked_field_by_field(api, body, field):
    assert_refused(api.post("/v1/jobs", json=body), 422, field)


@pytest.mark.parametrize("literal,field", [
    ('"learning_rate": Infinity', "training.learning_rate"),
    ('"learning_rate": NaN', "training.learning_rate"),
    ('"weight_decay": 1e400', "training.weight_decay"),
    ('"eps": Infinity', "training.eps"),
    ('"schedule": {"name": "cosine", "min_lr": Infinity}', "training.schedule.min_lr"),
    ('"early_stopping": {"monitor": "loss", "min_delta": Infinity}',
     "training.early_stopping.min_delta"),
])
def test_non_finite_hyperparameters_are_422(api, literal, field):
    raw = ('{"network": %s, "data": {"X": [[1, 2]], "y": [0]}, "training": {"epochs": 1, %s}}'
           % (json.dumps(NETWORK), literal))
    answer = api.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert_refused(answer, 422, field)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400"])
def test_non_finite_inline_data_is_422(api, literal):
    raw = '{"network": %s, "data": {"X": [[1, %s]], "y": [0]}}' % (json.dumps(NETWORK), literal)
    answer = api.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert_refused(answer, 422, "data.X")


def test_labels_of_an_uploaded_dataset_that_do_not_fit_the_output_layer(api):
    dataset = api.post("/v1/datasets", json={"X": [[0, 1], [1, 0]], "y": [0, 5]}).json()
    answer = api.post("/v1/jobs", json={"network": NETWORK, "dataset_id": dataset["id"]})
    error = assert_refused(answer, 422, "network.layers")
    assert "3 units" in error["message"] and "2 classes" in error["message"], error
    answer = api.post("/v1/jobs", json={"network": NETWORK, "dataset_id": dataset["id"],
                                        "preprocessing": "none"})
    error = assert_refused(answer, 422, "dataset_id")
    assert "[0, 3)" in error["message"], error
    assert api.delete(f"/v1/datasets/{dataset['id']}").status_code == 204


# -- predict ---------------------------------------------------------------------------------------
PREDICT_CASES = [
    ({}, "inputs"),
    ({"inputs": [[0, 1]], "extra": 1}, "extra"),
    ({"inputs": "x"}, "inputs"),
    ({"inputs": []}, "inputs"),
    ({"inputs": [[]]}, "inputs"),
    ({"inputs": [[0, 1], [1]]}, "inputs"),            # ragged
    ({"inputs": [[0, 1, 2]]}, "inputs"),              # wrong width
    ({"inputs": [[0, "a"]]}, "inputs"),
    ({"inputs": [[0, None]]}, "inputs"),
    ({"inputs": [[0, 1e39]]}, "inputs"),              # too big for the float32 model
]


@pytest.mark.parametrize("body,field", PREDICT_CASES)
def test_predict_inputs_are_checked(api, trained, body, field):
    assert_refused(api.post(f"/v1/models/{trained['model']}/predict", json=body), 422, field)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400"])
def test_non_finite_predict_inputs_are_422(api, trained, literal):
    answer = api.post(f"/v1/models/{trained['model']}/predict",
                      content=('{"inputs": [[0, %s]]}' % literal).encode(),
                      headers={"Content-Type": "application/json"})
    assert_refused(answer, 422, "inputs")


@pytest.mark.parametrize("payload", [
    npy_bytes(np.array([[0.0, np.nan]])), npy_bytes(np.zeros(2)), npy_bytes(np.zeros((1, 5))),
    npy_bytes(np.array([["a", "b"]])), b"not an npy file",
    npy_bytes(np.array([[1, 2]], dtype=object)),
], ids=["nan", "1-D", "wide", "strings", "garbage", "pickled"])
def test_bad_npy_predict_bodies_are_422(api, trained, payload):
    answer = api.post(f"/v1/models/{trained['model']}/predict", content=payload,
                      headers={"Content-Type": "application/x-npy"})
    assert_refused(answer, 422, "inputs")


# -- query values ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url,field", [
    ("/v1/jobs?status=finished", "status"),
    ("/v1/jobs?limit=0", "limit"),
    ("/v1/jobs?limit=lots", "limit"),
    ("/v1/jobs?limit=100000000000000000000000", "limit"),
    ("/v1/jobs/{job}/history?since_epoch=-1", "since_epoch"),
    ("/v1/jobs/{job}/history?since_epoch=1e3", "since_epoch"),
])
def test_unknown_query_values_are_422(api, trained, url, field):
    assert_refused(api.get(url.format(**trained)), 422, field)


def test_a_query_flag_that_is_not_a_boolean_is_422(api, trained):
    assert_refused(api.delete(f"/v1/jobs/{trained['job']}?keep_model=perhaps"), 422,
                   "keep_model")
    assert api.get(f"/v1/jobs/{trained['job']}").status_code == 200


# -- ids -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,url", [
    ("GET", "/v1/datasets/{id}"), ("DELETE", "/v1/datasets/{id}"),
    ("GET", "/v1/jobs/{id}"), ("GET", "/v1/jobs/{id}/history"), ("POST", "/v1/jobs/{id}/cancel"),
    ("DELETE", "/v1/jobs/{id}"), ("GET", "/v1/models/{id}"), ("GET", "/v1/models/{id}/weights"),
    ("POST", "/v1/models/{id}/predict"), ("DELETE", "/v1/models/{id}"),
])
@pytest.mark.parametrize("item_id", ["job_AAAAAAAAAAAAAAAA", "1", "..%2F..%2Fetc", "x" * 300,
                                     "%F0%9F%90%8D"])
def test_unknown_ids_are_404(api, method, url, item_id):
    answer = api.request(method, url.format(id=item_id), json={"inputs": [[0, 1]]})
    assert_refused(answer, 404, None)


def test_ids_are_random_not_sequential(api, trained):
    ids = {"ds": [], "job": [], "mdl": []}
    for _ in range(6):
        answer = api.post("/v1/datasets", json={"X": [[0, 1], [1, 0]], "y": [0, 1]})
        ids["ds"].append(answer.json()["id"])
    ids["job"].append(trained["job"])
    ids["mdl"].append(trained["model"])
    for kind, made in ids.items():
        for item_id in made:
            prefix, _, token = item_id.partition("_")
            assert prefix == kind, item_id
            # 96 random bits in URL-safe base64: 16 characters
            assert re.fullmatch(r"[A-Za-z0-9_-]{16}", token), item_id
    tokens = [i.split("_", 1)[1] for i in ids["ds"]]
    assert len(set(tokens)) == len(tokens)
    # no shared prefix beyond the kind: consecutive ids share at most a character or two
    shared = [len(_common_prefix(a, b)) for a, b in zip(tokens, tokens[1:])]
    assert max(shared) <= 2, (tokens, shared)
    for item_id in ids["ds"]:
        assert api.delete(f"/v1/datasets/{item_id}").status_code == 204


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
