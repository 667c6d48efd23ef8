"""Every configured limit, provoked on a stack of its own started with small limits: each answers
413 or 422 with a message naming the field and the setting to change; a request right at the
limit is accepted."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.service.helpers import classifier, own_stack


LIMITS = {
    "BACKPROP_MAX_BODY_BYTES": "20000", "BACKPROP_MAX_DATASET_ROWS": "50",
    "BACKPROP_MAX_DATASET_BYTES": "4000", "BACKPROP_MAX_INLINE_ROWS": "20",
    "BACKPROP_MAX_PARAMETERS": "200", "BACKPROP_MAX_LAYERS": "3", "BACKPROP_MAX_UNITS": "16",
    "BACKPROP_MAX_EPOCHS": "5", "BACKPROP_MAX_BATCH_SIZE": "64",
    "BACKPROP_MAX_PREDICT_ROWS": "10", "BACKPROP_JOB_TIMEOUT_S": "60",
}
NETWORK = classifier(hidden=4, classes=2)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("limits"))
    stack = own_stack(root, workers=1, extra_env=LIMITS)
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client
    stack.stop()


def data(rows: int, features: int = 2) -> dict:
    X = np.random.default_rng(rows).normal(size=(rows, features)).round(3)
    return {"X": X.tolist(), "y": (np.arange(rows) % 2).tolist()}


def job(**changes) -> dict:
    return {"network": NETWORK, "data": data(8), "training": {"epochs": 1}, **changes}


def assert_limit(answer: httpx.Response, status: int, field: str | None, setting: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text)
    error = answer.json()["error"]
    assert setting in error["message"], error
    if field is not None:
        assert error["field"] == field, error


# -- request body --------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413_before_it_is_read(api):
    big = b'{"X": [' + b"[1.0, 2.0]," * 3000 + b'[1.0, 2.0]], "y": [0]}'
    answer = api.post("/v1/datasets", content=big, headers={"Content-Type": "application/json"})
    assert_limit(answer, 413, None, "BACKPROP_MAX_BODY_BYTES")


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(api):
    def chunks():
        yield b'{"inputs": ['
        for _ in range(2000):
            yield b"[1.0, 2.0],"
        yield b"[1.0, 2.0]]}"

    answer = api.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in answer.request.headers}
    assert_limit(answer, 413, None, "BACKPROP_MAX_BODY_BYTES")


def test_a_big_multipart_upload_is_413(api):
    csv = b"a,b,label\n" + b"1.5,2.5,0\n" * 3000
    answer = api.post("/v1/datasets", files={"file": ("d.csv", csv)})
    assert_limit(answer, 413, None, "BACKPROP_MAX_BODY_BYTES")


# -- datasets ----------------------------------------------------------------------------------------
def test_dataset_rows(api):
    assert api.post("/v1/datasets", json=data(50)).status_code == 201
    assert_limit(api.post("/v1/datasets", json=data(51)), 413, "X", "BACKPROP_MAX_DATASET_ROWS")


def test_dataset_bytes(api):
    # 40 rows x 24 float32 features = 3840 bytes, + 40 int64 labels = 4160 > 4000
    answer = api.post("/v1/datasets", json=data(40, 24))
    assert_limit(answer, 413, "X", "BACKPROP_MAX_DATASET_BYTES")
    buf = io.BytesIO()
    np.savez(buf, X=np.zeros((45, 24), np.float32), y=np.zeros(45, np.int8))
    answer = api.post("/v1/datasets", files={"file": ("d.npz", buf.getvalue())})
    assert_limit(answer, 413, "X", "BACKPROP_MAX_DATASET_BYTES")
    assert api.post("/v1/datasets", json=data(40, 20)).status_code == 201  # 3200 + 320


def test_inline_rows(api):
    assert api.post("/v1/jobs", json=job(data=data(20))).status_code == 202
    assert_limit(api.post("/v1/jobs", json=job(data=data(21))), 413, "data.X",
                 "BACKPROP_MAX_INLINE_ROWS")


# -- networks and training ---------------------------------------------------------------------------
def layers(*units: int) -> dict:
    hidden = [{"units": u, "activation": "relu"} for u in units]
    return {"layers": hidden + [{"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}


@pytest.mark.parametrize("changes,status,field,setting", [
    ({"network": layers(4, 4, 4)}, 422, "network.layers", "BACKPROP_MAX_LAYERS"),
    ({"network": layers(17)}, 422, "network.layers[0].units", "BACKPROP_MAX_UNITS"),
    ({"network": layers(16, 16)}, 422, "network", "BACKPROP_MAX_PARAMETERS"),
    ({"training": {"epochs": 6}}, 422, "training.epochs", "BACKPROP_MAX_EPOCHS"),
    ({"training": {"epochs": 1, "batch_size": 65}}, 422, "training.batch_size",
     "BACKPROP_MAX_BATCH_SIZE"),
    ({"timeout_s": 61}, 422, "timeout_s", "BACKPROP_JOB_TIMEOUT_S"),
])
def test_network_and_training_limits(api, changes, status, field, setting):
    assert_limit(api.post("/v1/jobs", json=job(**changes)), status, field, setting)


def test_a_job_right_at_every_limit_is_accepted(api):
    # 2 inputs: (2*8+8) + (8*8+8) + (8*2+2) = 114 parameters <= 200
    answer = api.post("/v1/jobs", json=job(network=layers(8, 8), timeout_s=60,
                                           training={"epochs": 5, "batch_size": 64}))
    assert answer.status_code == 202, answer.text


# -- predict -----------------------------------------------------------------------------------------
def test_predict_rows(api):
    submitted = api.post("/v1/jobs", json=job()).json()
    deadline = time.monotonic() + 60
    while (done := api.get(f"/v1/jobs/{submitted['id']}").json())["status"] in ("queued",
                                                                                 "running"):
        assert time.monotonic() < deadline, done
        time.sleep(0.05)
    assert done["status"] == "succeeded", done
    url = f"/v1/models/{done['model_id']}/predict"
    assert api.post(url, json={"inputs": [[0.0, 1.0]] * 10}).status_code == 200
    assert_limit(api.post(url, json={"inputs": [[0.0, 1.0]] * 11}), 413, "inputs",
                 "BACKPROP_MAX_PREDICT_ROWS")
