"""/v1/datasets over real HTTP: JSON, CSV and NPZ uploads, stored as binary arrays."""

import hashlib

import numpy as np

from core.keys import Keys
from tests.service.helpers import npz_bytes, upload_npz


def expected_sha256(X, y):
    """Each stored array's bytes in turn: X, the (empty) category codes, y."""
    return hashlib.sha256(np.ascontiguousarray(X).tobytes() + np.ascontiguousarray(y).tobytes()).hexdigest()


def test_json_upload_is_stored_as_binary_arrays(api, redis_client):
    X = [[0.0, 1.5], [2.0, -1.0], [3.25, 4.0]]
    answer = api.post("/v1/datasets", json={"name": "tiny", "X": X, "y": [0, 1, 1]})
    assert answer.status_code == 201, answer.text
    meta = answer.json()
    assert answer.headers["location"] == f"/v1/datasets/{meta['id']}"
    assert (meta["n_samples"], meta["n_features"], meta["n_outputs"], meta["classes"]) == (3, 2, 1, 2)
    assert meta["dtype"] == "float32" and meta["source"] == "json"
    assert meta["sha256"] == expected_sha256(np.array(X, np.float32), np.array([0, 1, 1], np.int64))
    raw = redis_client.get(Keys().dataset_x(meta["id"]))
    assert raw.startswith(b"\x93NUMPY"), "X must be stored as .npy bytes, not JSON text"
    assert meta["bytes"] == sum(len(redis_client.get(key(meta["id"]))) for key in (
        Keys().dataset_x, Keys().dataset_codes, Keys().dataset_y))


def test_csv_upload_with_named_target_columns(api):
    csv = "a,b,label,c\n1,2,0,3\n4,5,1,6\n7,8,2,9\n"
    answer = api.post("/v1/datasets", files={"file": ("d.csv", csv.encode())},
                      data={"target": "label", "name": "csv-set"})
    assert answer.status_code == 201, answer.text
    meta = answer.json()
    assert (meta["n_samples"], meta["n_features"], meta["classes"], meta["source"]) == (3, 3, 3, "csv")

    two = api.post("/v1/datasets", files={"file": ("d.csv", csv.encode())},
                   data={"target": "label,c"})
    assert two.status_code == 201 and two.json()["n_outputs"] == 2

    missing = api.post("/v1/datasets", files={"file": ("d.csv", csv.encode())},
                       data={"target": "nope"})
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "target" and "nope" in missing.json()["error"]["message"]


def test_npz_upload_keeps_float64_when_asked(api):
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.random.default_rng(1).normal(size=(20, 2))
    answer = api.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=y))},
                      data={"dtype": "float64"})
    assert answer.status_code == 201, answer.text
    meta = answer.json()
    assert meta["dtype"] == "float64" and meta["n_outputs"] == 2 and meta["classes"] is None
    assert meta["sha256"] == expected_sha256(X, y)


def test_list_get_delete(api):
    meta = upload_npz(api, np.ones((4, 2), np.float32), np.array([0, 1, 0, 1]), name="to-delete")
    assert meta["id"] in [d["id"] for d in api.get("/v1/datasets").json()["datasets"]]
    assert api.get(f"/v1/datasets/{meta['id']}").json()["name"] == "to-delete"
    assert api.delete(f"/v1/datasets/{meta['id']}").status_code == 204
    gone = api.get(f"/v1/datasets/{meta['id']}")
    assert gone.status_code == 404 and meta["id"] in gone.json()["error"]["message"]
    assert api.delete(f"/v1/datasets/{meta['id']}").status_code == 404


def test_ragged_and_non_finite_data_are_refused_with_the_field(api):
    ragged = api.post("/v1/datasets", json={"X": [[1, 2], [3]], "y": [0, 1]})
    assert ragged.status_code == 422 and ragged.json()["error"]["field"] == "X"
    mismatch = api.post("/v1/datasets", json={"X": [[1, 2], [3, 4]], "y": [0]})
    assert mismatch.status_code == 422 and mismatch.json()["error"]["field"] == "y"
    nan = api.post("/v1/datasets", content=b'{"X": [[1, NaN]], "y": [0]}',
                   headers={"content-type": "application/json"})
    assert nan.status_code == 422
