"""The Open Inference Protocol (KServe v2 REST) over real HTTP, against models trained by real
workers; Triton's own Python client (tritonclient.http) talks to it unchanged."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from core.settings import Settings
from service.embedded_redis import free_port
from service.launcher import Stack
from tests.service.helpers import blobs, classifier, wait_for_job

HEADER = "Inference-Header-Content-Length"


def train(api: httpx.Client, network: dict, X: np.ndarray, y: np.ndarray, dtype: str) -> str:
    job = api.post("/v1/jobs", json={"network": network, "dtype": dtype, "data": {
        "X": X.tolist(), "y": y.tolist()}, "training": {"epochs": 3, "learning_rate": 0.05}})
    assert job.status_code == 202, job.text
    done = wait_for_job(api, job.json()["id"])
    assert done["status"] == "succeeded", done
    return done["model_id"]


@pytest.fixture(scope="module")
def models(stack) -> dict[str, str]:
    """A float32 softmax classifier (4 inputs, 3 classes) and a float64 regressor (2 outputs)."""
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        X, y = blobs(n=60)
        regression = {"layers": [{"units": 5, "activation": "tanh"},
                                 {"units": 2, "activation": "identity"}], "loss": "squared_error"}
        return {"classifier": train(api, classifier(hidden=8), X, y, "float32"),
                "regressor": train(api, regression, X, np.c_[X[:, 0], X[:, 1] - X[:, 2]],
                                   "float64")}


def rows(n: int = 5, seed: int = 1) -> np.ndarray:
    return blobs(n=n, seed=seed)[0]


def tensor(X: np.ndarray, datatype: str = "FP32", name: str = "input", **extra) -> dict:
    return {"name": name, "shape": list(X.shape), "datatype": datatype,
            "data": X.ravel().tolist(), **extra}


def outputs_of(answer: httpx.Response) -> dict[str, np.ndarray]:
    assert answer.status_code == 200, answer.text
    return {t["name"]: np.array(t["data"]).reshape(t["shape"]) for t in answer.json()["outputs"]}


def binary_request(X: np.ndarray, datatype: str, **fields) -> tuple[bytes, dict]:
    raw = np.ascontiguousarray(X, dtype=X.dtype.newbyteorder("<")).tobytes()
    header = json.dumps({"inputs": [{"name": "input", "shape": list(X.shape),
                                     "datatype": datatype,
                                     "parameters": {"binary_data_size": len(raw)}}],
                         **fields}).encode()
    return header + raw, {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}


def binary_outputs(answer: httpx.Response) -> dict[str, np.ndarray]:
    """Split a binary-extension response into its tensors, as a client would."""
    assert answer.status_code == 200, answer.text
    length = int(answer.headers[HEADER])
    header, raw = json.loads(answer.content[:length]), answer.content[length:]
    types = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8"}
    found, offset = {}, 0
    for t in header["outputs"]:
        if "data" in t:
            found[t["name"]] = np.array(t["data"]).reshape(t["shape"])
            continue
        size = t["parameters"]["binary_data_size"]
        found[t["name"]] = np.frombuffer(raw[offset:offset + size],
                                         dtype=types[t["datatype"]]).reshape(t["shape"])
        offset += size
    assert offset == len(raw)
    return found


def test_health_and_server_metadata(api):
    assert api.get("/v2/health/live").json() == {"live": True}
    ready = api.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    server = api.get("/v2").json()
    assert server["name"] == "backprop-service" and server["version"]
    assert "binary_tensor_data" in server["extensions"]


def test_model_metadata_and_readiness(api, models):
    clf = api.get(f"/v2/models/{models['classifier']}").json()
    assert clf["name"] == models["classifier"] and clf["platform"] == "backprop_numpy"
    assert clf["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert clf["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]},
                              {"name": "label", "datatype": "INT64", "shape": [-1]}]
    reg = api.get(f"/v2/models/{models['regressor']}").json()
    assert reg["inputs"][0]["datatype"] == "FP64"
    assert reg["outputs"] == [{"name": "output", "datatype": "FP64", "shape": [-1, 2]}]
    ready = api.get(f"/v2/models/{models['classifier']}/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_infer_json_matches_v1_predict(api, models):
    X = rows()
    v1 = api.post(f"/v1/models/{models['classifier']}/predict", json={"inputs": X.tolist()})
    assert v1.status_code == 200, v1.text
    answer = api.post(f"/v2/models/{models['classifier']}/infer",
                      json={"id": "req-7", "inputs": [tensor(X)]})
    assert answer.json()["model_name"] == models["classifier"]
    assert answer.json()["id"] == "req-7"
    found = outputs_of(answer)
    assert [t["datatype"] for t in answer.json()["outputs"]] == ["FP32", "INT64"]
    np.testing.assert_array_equal(found["output"], np.array(v1.json()["outputs"]))
    np.testing.assert_array_equal(found["label"], v1.json()["labels"])
    assert found["label"].shape == (5,)

    nested = api.post(f"/v2/models/{models['classifier']}/infer",
                      json={"inputs": [{**tensor(X, "FP64"), "data": X.tolist()}]})
    np.testing.assert_allclose(outputs_of(nested)["output"], found["output"], atol=1e-6)
    assert "id" not in nested.json()
    other_name = api.post(f"/v2/models/{models['classifier']}/infer",
                          json={"inputs": [tensor(X, name="input-0")]})
    np.testing.assert_array_equal(outputs_of(other_name)["output"], found["output"])


def test_infer_float64_model_answers_fp64(api, models):
    X = rows().astype(np.float64)
    v1 = api.post(f"/v1/models/{models['regressor']}/predict", json={"inputs": X.tolist()})
    answer = api.post(f"/v2/models/{models['regressor']}/infer",
                      json={"inputs": [tensor(X, "FP64")]})
    assert [t["name"] for t in answer.json()["outputs"]] == ["output"]
    assert answer.json()["outputs"][0]["datatype"] == "FP64"
    np.testing.assert_array_equal(outputs_of(answer)["output"], np.array(v1.json()["outputs"]))


def test_requested_outputs_only(api, models):
    answer = api.post(f"/v2/models/{models['classifier']}/infer",
                      json={"inputs": [tensor(rows())], "outputs": [{"name": "label"}]})
    assert list(outputs_of(answer)) == ["label"]
    unknown = api.post(f"/v2/models/{models['classifier']}/infer",
                       json={"inputs": [tensor(rows())], "outputs": [{"name": "probs"}]})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "unknown output(s) ['probs']; this model's outputs are "
                                       "['label', 'output']"}


def test_binary_tensors_both_ways(api, models):
    X = rows(n=7)
    url = f"/v2/models/{models['classifier']}/infer"
    reference = outputs_of(api.post(url, json={"inputs": [tensor(X)]}))
    body, headers = binary_request(X, "FP32", parameters={"binary_data_output": True})
    answer = api.post(url, content=body, headers=headers)
    assert answer.headers["content-type"] == "application/octet-stream"
    found = binary_outputs(answer)           # the same float32 numbers that JSON printed
    np.testing.assert_array_equal(found["output"], reference["output"].astype(np.float32))
    np.testing.assert_array_equal(found["label"], reference["label"])
    assert found["output"].dtype == np.float32 and found["label"].dtype == np.int64

    # binary input, one JSON output and one binary output
    body, headers = binary_request(X.astype(np.float64), "FP64", outputs=[
        {"name": "output"}, {"name": "label", "parameters": {"binary_data": True}}])
    mixed = binary_outputs(api.post(url, content=body, headers=headers))
    np.testing.assert_allclose(mixed["output"], reference["output"], atol=1e-6)
    np.testing.assert_array_equal(mixed["label"], reference["label"])


def test_binary_size_mismatch_is_a_protocol_error(api, models):
    X = rows()
    body, headers = binary_request(X, "FP32")
    answer = api.post(f"/v2/models/{models['classifier']}/infer", content=body[:-4],
                      headers=headers)
    assert answer.status_code == 400
    assert "binary" in answer.json()["error"] and "4" in answer.json()["error"]


@pytest.mark.parametrize("request_json, expected", [
    ({"inputs": [tensor(np.zeros((2, 3), np.float32))]}, "shape must be [rows, 4]"),
    ({"inputs": [tensor(np.zeros((2, 4), np.float32), "BYTES")]}, "datatype 'BYTES'"),
    ({"inputs": [{**tensor(np.zeros((2, 4), np.float32)), "data": [1.0] * 7}]},
     "data holds 7 values but shape [2, 4] needs 8"),
    ({"inputs": [tensor(np.zeros((1, 4), np.float32)),
                 tensor(np.zeros((1, 4), np.float32), name="mask")]},
     "one input tensor ('input'); got 2: ['input', 'mask']"),
    ({"inputs": [{**tensor(np.zeros((1, 4), np.float32)), "data": [1, "a", 2, 3]}]},
     "numbers only"),
    ({"inputs": []}, '"inputs"'),
    ({"inputs": [{**tensor(np.zeros((1, 4), np.float32)), "data": [1e39, 0, 0, 0]}]},
     "too large for float32"),
])
def test_bad_requests_answer_400_in_protocol_form(api, models, request_json, expected):
    answer = api.post(f"/v2/models/{models['classifier']}/infer", json=request_json)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"} and expected in answer.json()["error"]


def test_unknown_models_routes_and_methods(api, models):
    for path in ("/v2/models/mdl_missing", "/v2/models/mdl_missing/ready"):
        answer = api.get(path)
        assert answer.status_code == 404 and "mdl_missing" in answer.json()["error"]
    infer = api.post("/v2/models/mdl_missing/infer", json={"inputs": [tensor(rows())]})
    assert infer.status_code == 404 and isinstance(infer.json()["error"], str)
    not_json = api.post(f"/v2/models/{models['classifier']}/infer", content=b"{nope")
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    route = api.get("/v2/repository/index")
    assert route.status_code == 404 and "/v2/models/{id}/infer" in route.json()["error"]
    method = api.get(f"/v2/models/{models['classifier']}/infer")
    assert method.status_code == 405 and method.headers["allow"] == "POST"
    assert set(method.json()) == {"error"}
    v1 = api.get("/v1/models/mdl_missing")          # /v1 keeps the service's own error form
    assert v1.status_code == 404 and v1.json()["error"]["status"] == 404


@pytest.fixture(scope="module")
def keyed_api(stack):
    """A second API process on the same Redis, with API keys (`public` owns the session's
    keyless records, `other` owns none), at most 5 rows and 1 MiB per predict. The session's
    workers keep it ready."""
    keyed = Stack(Settings(), "127.0.0.1", free_port(), workers=0, extra_env={
        "BACKPROP_API_KEYS": "public:key-of-public,other:key-of-other",
        "BACKPROP_MAX_PREDICT_ROWS": "5",
        "BACKPROP_PREDICT_MEMORY_BYTES": "1048576"}).start()
    yield keyed
    keyed.stop()


def test_v2_applies_the_api_keys_and_tenants_of_v1(keyed_api, models):
    url = f"{keyed_api.url}/v2/models/{models['classifier']}"
    body = {"inputs": [tensor(rows())]}
    missing = httpx.post(f"{url}/infer", json=body)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    owner = {"Authorization": "Bearer key-of-public"}
    assert httpx.post(f"{url}/infer", json=body, headers=owner).status_code == 200
    assert httpx.get(url, headers=owner).status_code == 200
    other = {"Authorization": "Bearer key-of-other"}
    for answer in (httpx.post(f"{url}/infer", json=body, headers=other),
                   httpx.get(url, headers=other), httpx.get(f"{url}/ready", headers=other)):
        assert answer.status_code == 404 and set(answer.json()) == {"error"}
    assert httpx.get(f"{keyed_api.url}/v2/health/live").status_code == 200


def test_too_many_rows_is_413_in_protocol_form(keyed_api, models):
    answer = httpx.post(f"{keyed_api.url}/v2/models/{models['classifier']}/infer",
                        json={"inputs": [tensor(rows(n=6))]},
                        headers={"Authorization": "Bearer key-of-public"})
    assert answer.status_code == 413
    assert answer.json() == {"error": "input 'input': 6 rows; at most 5 per request "
                                      "(BACKPROP_MAX_PREDICT_ROWS)"}


def test_tritonclient_works_unchanged(stack, models):
    """Triton's HTTP client (binary tensors by default) against the service as is."""
    import tritonclient.http as triton

    X = rows(n=6)
    expected = httpx.post(f"{stack.url}/v1/models/{models['classifier']}/predict",
                          json={"inputs": X.tolist()}).json()
    client = triton.InferenceServerClient(url=stack.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(models["classifier"])
        meta = client.get_model_metadata(models["classifier"])
        assert meta["inputs"][0]["shape"] == [-1, 4]
        for binary in (True, False):
            tensor_in = triton.InferInput("input", list(X.shape), "FP32")
            tensor_in.set_data_from_numpy(X, binary_data=binary)
            wanted = [triton.InferRequestedOutput("output", binary_data=binary),
                      triton.InferRequestedOutput("label", binary_data=not binary)]
            result = client.infer(models["classifier"], [tensor_in], outputs=wanted,
                                  request_id="t1")
            np.testing.assert_array_equal(result.as_numpy("output"),
                                          np.float32(expected["outputs"]))
            np.testing.assert_array_equal(result.as_numpy("label"), expected["labels"])
            assert result.get_response()["id"] == "t1"
        default = client.infer(models["classifier"], [tensor_in])   # all outputs, binary
        np.testing.assert_array_equal(default.as_numpy("label"), expected["labels"])
    finally:
        client.close()


@pytest.mark.parametrize("length", ["²".encode("latin-1"), "١".encode(), b"12a", b"-5"],
                         ids=["superscript-two", "arabic-indic-one", "letters", "negative"])
def test_a_header_length_that_is_not_ascii_digits_is_400(api, models, length):
    body, headers = binary_request(rows(), "FP32")
    answer = api.post(f"/v2/models/{models['classifier']}/infer", content=body,
                      headers={**headers, HEADER: length})
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"}
    assert "Inference-Header-Content-Length" in answer.json()["error"]


def test_an_integer_beyond_float64_is_400_naming_the_input(api, models):
    body = (b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", '
            b'"data": [1, 2, 3, 1%s]}]}' % (b"0" * 400))
    answer = api.post(f"/v2/models/{models['classifier']}/infer", content=body,
                      headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"}
    assert answer.json()["error"].startswith("input 'input': ") and "too large" in \
        answer.json()["error"]


def test_json_beyond_the_memory_budget_is_413_in_protocol_form(keyed_api, models):
    """keyed_api's predicts may use 1 MiB: the numbers of this body would take more parsed."""
    answer = httpx.post(f"{keyed_api.url}/v2/models/{models['classifier']}/infer",
                        json={"inputs": [tensor(np.zeros((5, 8000), np.float32))]},
                        headers={"Authorization": "Bearer key-of-public"})
    assert answer.status_code == 413, answer.text
    assert set(answer.json()) == {"error"}
    assert "BACKPROP_PREDICT_MEMORY_BYTES=1048576" in answer.json()["error"]


def test_a_model_of_a_table_answers_its_class_names_as_bytes(api):
    """A table with a text target: the model takes the raw columns and answers the classes'
    own names, as JSON strings or as the binary BYTES form (4-byte length, then UTF-8)."""
    X, y = blobs(n=60, features=2, seed=4)
    names = np.array(["adélie", "chinstrap", "gentoo"])[y]
    table = "x1,x2,species\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(X, names))
    dataset = api.post("/v1/datasets", files={"file": ("t.csv", table.encode())},
                       data={"target": "species"})
    assert dataset.status_code == 201, dataset.text
    job = api.post("/v1/jobs", json={"dataset_id": dataset.json()["id"],
                                     "network": classifier(hidden=8),
                                     "training": {"epochs": 30, "learning_rate": 0.05}})
    assert job.status_code == 202, job.text
    done = wait_for_job(api, job.json()["id"])
    assert done["status"] == "succeeded", done
    url = f"/v2/models/{done['model_id']}"
    meta = api.get(url).json()
    assert meta["inputs"][0]["shape"] == [-1, 2]
    assert meta["outputs"][1] == {"name": "label", "datatype": "BYTES", "shape": [-1]}
    v1 = api.post(f"/v1/models/{done['model_id']}/predict", json={"inputs": X[:6].tolist()})
    assert v1.status_code == 200, v1.text
    answer = api.post(f"{url}/infer", json={"inputs": [tensor(X[:6])]})
    assert answer.status_code == 200, answer.text
    label = answer.json()["outputs"][1]
    assert label["datatype"] == "BYTES" and label["data"] == v1.json()["labels"]
    assert set(label["data"]) <= set(names)
    body, headers = binary_request(X[:6], "FP32", outputs=[
        {"name": "label", "parameters": {"binary_data": True}}])
    binary = api.post(f"{url}/infer", content=body, headers=headers)
    assert binary.status_code == 200, binary.text
    raw = binary.content[int(binary.headers[HEADER]):]
    decoded, offset = [], 0
    while offset < len(raw):
        size = int.from_bytes(raw[offset:offset + 4], "little")
        decoded.append(raw[offset + 4:offset + 4 + size].decode())
        offset += 4 + size
    assert decoded == v1.json()["labels"]
