"""POST /v1/models/{id}/predict over real HTTP: its codecs, its errors, its place off the event
loop and its memory budget (BACKPROP_PREDICT_MEMORY_BYTES).

Tests that count requests or change settings run an API process of their own on the session's
Valkey (its workers train the models), so nothing here reads a counter another test moves.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from core.settings import Settings
from service.embedded_redis import free_port
from service.launcher import Stack
from tests.service.helpers import (blobs, classifier, log_lines, npy_bytes, npz_bytes, scrape,
                                   trained_records, value)

JSON = {"content-type": "application/json"}
NPY = "application/x-npy"


def own_api(log_dir: Path, **env: str) -> Stack:
    """An API process of this test's own (settings from `env`) on the session's Valkey."""
    api = Stack(Settings(), "127.0.0.1", free_port(), workers=0, log_dir=log_dir,
                extra_env=env).start()
    api.logs = log_dir
    return api


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmHWM")


def regressor(hidden: int) -> dict:
    return {"layers": [{"units": hidden, "activation": "relu"},
                       {"units": 1, "activation": "identity"}], "loss": "squared_error"}


@pytest.fixture(scope="module")
def model(stack) -> dict:
    """A 4-input, 3-class classifier, and rows to predict."""
    X, y = blobs(n=90, features=4, seed=7)
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        records = trained_records(api, X, y, classifier(hidden=8))
    return {"id": records["model_id"], "rows": X[:3].tolist()}


def test_json_and_npy_bodies_and_answers(api, model):
    url, rows = f"/v1/models/{model['id']}/predict", np.float32(model["rows"])
    plain = api.post(url, json={"inputs": model["rows"]})
    assert plain.status_code == 200, plain.text
    assert plain.headers["content-type"] == "application/json"
    answer = plain.json()
    assert answer["model_id"] == model["id"] and len(answer["outputs"]) == 3
    assert answer["labels"] == np.argmax(answer["outputs"], axis=1).tolist()
    payload = ('{"inputs": %s}' % model["rows"]).encode()
    chunked = api.post(url, content=iter([payload[:7], payload[7:20], payload[20:]]),
                       headers={"content-type": "application/json; charset=utf-8"})
    assert "content-length" not in chunked.request.headers              # really chunked
    assert chunked.status_code == 200 and chunked.content == plain.content
    untyped = api.post(url, content=payload, headers={"content-type": ""})
    assert untyped.status_code == 200 and untyped.content == plain.content
    npy_in = api.post(url, content=npy_bytes(rows), headers={"content-type": NPY})
    assert npy_in.status_code == 200, npy_in.text
    np.testing.assert_allclose(npy_in.json()["outputs"], answer["outputs"], rtol=1e-6)
    both = api.post(url, content=npy_bytes(rows), headers={"content-type": NPY, "accept": NPY})
    json_in = api.post(url, json={"inputs": model["rows"]}, headers={"accept": NPY})
    for binary in (both, json_in):
        assert binary.status_code == 200 and binary.headers["content-type"] == NPY
        outputs = np.load(io.BytesIO(binary.content))
        assert outputs.shape == (3, 3) and outputs.dtype == np.float32
        np.testing.assert_allclose(outputs, answer["outputs"], rtol=1e-6)


@pytest.mark.parametrize("case, status, field", [
    ("wrong-width", 422, "inputs"), ("not-json", 422, "body"), ("nan", 422, "inputs"),
    ("bad-npy", 422, "inputs"), ("extra-field", 422, "x"), ("text-plain", 415, "body"),
    ("no-rows", 422, "inputs"), ("npz-as-npy", 422, "inputs"), ("integer-10**400", 422, "inputs"),
    ("zero-npy-rows", 422, "inputs")])
def test_bad_bodies_are_json_errors_naming_the_field(api, model, case, status, field):
    rows = np.asarray(model["rows"], np.float32)
    request = {
        "wrong-width": dict(json={"inputs": [[1.0, 2.0]]}),
        "not-json": dict(content=b'{"inputs": [[1, 2', headers=JSON),
        "nan": dict(content=b'{"inputs": [[NaN, 1, 2, 3]]}', headers=JSON),
        "bad-npy": dict(content=npy_bytes(rows)[:-3], headers={"content-type": NPY}),
        "extra-field": dict(json={"inputs": model["rows"], "x": 1}),
        "text-plain": dict(content=b"1,2,3,4", headers={"content-type": "text/plain"}),
        "no-rows": dict(json={"inputs": []}),
        "npz-as-npy": dict(content=npz_bytes(X=rows), headers={"content-type": NPY}),
        "integer-10**400": dict(content=b'{"inputs": [[1, 2, 3, 1%s]]}' % (b"0" * 400),
                                headers=JSON),
        "zero-npy-rows": dict(content=npy_bytes(np.zeros((0, 4), np.float32)),
                              headers={"content-type": NPY}),
    }[case]
    answer = api.post(f"/v1/models/{model['id']}/predict", **request)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["status"] == status and error.get("field") == field, error
    assert error["message"].startswith(f"{field}: "), error
    if case == "text-plain":
        assert "application/json" in error["message"] and NPY in error["message"]


def test_an_unknown_model_is_404(api):
    answer = api.post("/v1/models/mdl_does_not_exist/predict", json={"inputs": [[1.0]]})
    assert answer.status_code == 404 and "mdl_does_not_exist" in answer.json()["error"]["message"]


def test_predicts_are_counted_and_logged_under_the_route_template(model, tmp_path):
    api_process = own_api(tmp_path)
    try:
        with httpx.Client(base_url=api_process.url, timeout=30) as api:
            url = f"/v1/models/{model['id']}/predict"
            for _ in range(3):
                assert api.post(url, json={"inputs": model["rows"]}).status_code == 200
            assert api.post(url, json={"inputs": [[1.0]]}).status_code == 422
            samples = scrape(api)
        route = {"method": "POST", "route": "/v1/models/{model_id}/predict"}
        assert value(samples, "backprop_http_requests_total", status="200", **route) == 3
        assert value(samples, "backprop_http_requests_total", status="422", **route) == 1
        assert value(samples, "backprop_http_request_duration_seconds_count", **route) == 4
        lines = log_lines(api_process, lambda e: e.get("model_id") == model["id"]
                          and e.get("route") == route["route"])
        assert sorted(e["status"] for e in lines) == [200, 200, 200, 422], lines
        assert all(e["tenant"] == "public" for e in lines)
    finally:
        api_process.stop()


def test_health_stays_fast_while_a_100000_row_predict_runs(api, stack):
    """The forward pass runs in a work thread, not on the event loop: /healthz answers in
    milliseconds throughout a predict that takes seconds."""
    X, y = blobs(n=200, classes=2, features=16, seed=3)
    network = {"layers": [{"units": 1024, "activation": "relu"},
                          {"units": 64, "activation": "relu"},
                          {"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
    model_id = trained_records(api, X, y, network, epochs=1)["model_id"]
    url = f"/v1/models/{model_id}/predict"
    assert api.post(url, json={"inputs": X[:2].tolist()}).status_code == 200     # loaded
    big = npy_bytes(np.random.default_rng(0).standard_normal((100_000, 16), np.float32))
    done: dict = {}

    def predict():
        start = time.perf_counter()
        answer = httpx.post(stack.url + url, content=big, timeout=120,
                            headers={"content-type": NPY, "accept": NPY})
        done["seconds"], done["answer"] = time.perf_counter() - start, answer

    worker = threading.Thread(target=predict)
    worker.start()
    waits = []
    with httpx.Client(base_url=stack.url, timeout=60) as health:
        while worker.is_alive():
            start = time.perf_counter()
            assert health.get("/healthz").status_code == 200
            waits.append(time.perf_counter() - start)
            time.sleep(0.01)
    worker.join()
    assert done["answer"].status_code == 200, done["answer"].text
    assert np.load(io.BytesIO(done["answer"].content)).shape == (100_000, 2)
    assert len(waits) >= 5, (done["seconds"], waits)
    assert max(waits) < done["seconds"] / 3, (done["seconds"], sorted(waits)[-5:])


@pytest.fixture(scope="module")
def wide(stack) -> dict:
    """1-16384-1 and 1-65536-1 regressors: one row through them takes 64 KiB and 256 KiB."""
    X = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    with httpx.Client(base_url=stack.url, timeout=60) as api:
        return {hidden: trained_records(api, X, X[:, 0] ** 2, regressor(hidden),
                                        epochs=1)["model_id"] for hidden in (16384, 65536)}


@pytest.fixture(scope="module")
def budgeted(wide, model, tmp_path_factory):
    """An API process whose predicts may use 2 MiB each."""
    api_process = own_api(tmp_path_factory.mktemp("budget"),
                          BACKPROP_PREDICT_MEMORY_BYTES=str(2 << 20))
    yield api_process
    api_process.stop()


def test_a_large_predict_runs_in_chunks_so_its_memory_stays_bounded(api, wide, tmp_path):
    """4096 rows through 1-16384-1 would take 268 MB at once; they go through the network in
    chunks, and the API's peak memory grows by a fraction of that (on a process of this test's
    own, whose peak no other test moves). The answer is the one of smaller requests."""
    url = f"/v1/models/{wide[16384]}/predict"
    X = np.linspace(-2, 2, 4096, dtype=np.float32)[:, None]
    npy = {"content-type": NPY, "accept": NPY}
    pieces = [np.load(io.BytesIO(api.post(url, content=npy_bytes(part), headers=npy).content))
              for part in np.array_split(X, 16)]
    api_process = own_api(tmp_path)
    try:
        with httpx.Client(base_url=api_process.url, timeout=120) as own:
            assert own.post(url, json={"inputs": X[:3].tolist()}).status_code == 200  # loaded
            pid = api_process.api.pid
            idle = peak_rss_mb(pid)
            Path(f"/proc/{pid}/clear_refs").write_text("5")     # VmHWM := current RSS
            answer = own.post(url, content=npy_bytes(X), headers=npy)
            grown = peak_rss_mb(pid) - idle
    finally:
        api_process.stop()
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(np.load(io.BytesIO(answer.content)), np.concatenate(pieces),
                               rtol=1e-5, atol=1e-6)
    assert grown < 80, f"the API's peak memory grew by {grown:.0f} MB"


@pytest.mark.parametrize("case, what", [
    ("npy-rows", "100000 rows"), ("json-numbers", "parsing up to 60000 JSON numbers"),
    ("one-row", "one row through this network")])
def test_predicts_beyond_the_memory_budget_are_413_naming_the_setting(model, wide, budgeted,
                                                                      case, what):
    model_id = {"npy-rows": model["id"], "json-numbers": model["id"],
                "one-row": wide[65536]}[case]
    request = {
        "npy-rows": dict(content=npy_bytes(np.zeros((100_000, 4), np.float32)),
                         headers={"content-type": NPY}),
        "json-numbers": dict(json={"inputs": [[0.5] * 4] * 15_000}),
        "one-row": dict(json={"inputs": [[0.5]]}),
    }[case]
    answer = httpx.post(f"{budgeted.url}/v1/models/{model_id}/predict", timeout=30, **request)
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert error["field"] == "inputs" and error["message"].startswith(f"inputs: {what}"), error
    assert f"BACKPROP_PREDICT_MEMORY_BYTES={2 << 20}" in error["message"], error
    ok = httpx.post(f"{budgeted.url}/v1/models/{model['id']}/predict", timeout=30,
                    json={"inputs": model["rows"]})
    assert ok.status_code == 200, ok.text                   # small predicts still answer
