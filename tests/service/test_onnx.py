"""GET /v1/models/{id}/onnx: models trained by real workers, exported, run in onnxruntime, give
the service's own predictions to within 1e-5, for every activation, both float types."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime
import pytest

from engine.activations import ACTIVATIONS, LEAKY_SLOPE
from tests.service.helpers import blobs, wait_for_job

HIDDEN = ["relu", "leaky_relu", "softplus", "tanh", "sigmoid", "identity"]
"""One hidden layer of each elementwise activation, in every exported network."""

NETWORKS = {
    "softmax classifier, float32": ("float32", "softmax", "cross_entropy", 3),
    "sigmoid multilabel, float64": ("float64", "sigmoid", "binary_cross_entropy", 2),
    "identity regressor, float32": ("float32", "identity", "squared_error", 1),
    "sigmoid binary, float64": ("float64", "sigmoid", "binary_cross_entropy", 1),
}


def targets(X: np.ndarray, y: np.ndarray, loss: str, units: int):
    if loss == "cross_entropy":
        return y.tolist()
    if loss == "binary_cross_entropy":
        labels = np.c_[y == 0, X[:, 0] > 0][:, :units].astype(float)
        return labels.tolist() if units > 1 else labels[:, 0].tolist()
    return (X[:, 0] - 0.5 * X[:, 1]).tolist()


@pytest.fixture(scope="module")
def trained(stack) -> dict[str, str]:
    """One model per network, all submitted first so the two workers train them together."""
    import httpx

    X, y = blobs(n=60, features=4)
    X = X * 3                                   # reach the saturating ends of each activation
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        submitted = {}
        for name, (dtype, output, loss, units) in NETWORKS.items():
            hidden = HIDDEN if output != "identity" else HIDDEN[::-1]
            network = {"layers": [*({"units": 5, "activation": a} for a in hidden),
                                  {"units": units, "activation": output}], "loss": loss}
            job = api.post("/v1/jobs", json={
                "network": network, "dtype": dtype, "seed": 3,
                "data": {"X": X.tolist(), "y": targets(X, y, loss, units)},
                "training": {"epochs": 3, "learning_rate": 0.05}})
            assert job.status_code == 202, job.text
            submitted[name] = job.json()["id"]
        models = {}
        for name, job_id in submitted.items():
            done = wait_for_job(api, job_id)
            assert done["status"] == "succeeded", done
            models[name] = done["model_id"]
    return models


def test_the_export_covers_every_engine_activation():
    assert set(HIDDEN) | {"softmax"} == set(ACTIVATIONS)


@pytest.mark.parametrize("network", list(NETWORKS))
def test_onnxruntime_gives_the_service_predictions(api, trained, network):
    model_id = trained[network]
    answer = api.get(f"/v1/models/{model_id}/onnx")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    assert f'filename="{model_id}.onnx"' in answer.headers["content-disposition"]
    model = onnx.load(io.BytesIO(answer.content))
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Gemm") == len(HIDDEN) + 1
    assert all(a.i == 1 for n in model.graph.node if n.op_type == "Gemm"
               for a in n.attribute if a.name == "transB")
    leaky = next(n for n in model.graph.node if n.op_type == "LeakyRelu")
    assert leaky.attribute[0].f == pytest.approx(LEAKY_SLOPE)

    dtype = NETWORKS[network][0]
    X = (np.random.default_rng(7).normal(size=(40, 4)) * 4).astype(dtype)
    service = api.post(f"/v1/models/{model_id}/predict", json={"inputs": X.tolist()}).json()
    session = onnxruntime.InferenceSession(answer.content, providers=["CPUExecutionProvider"])
    ran = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": X})))
    assert ran["output"].dtype == np.dtype(dtype)
    np.testing.assert_allclose(ran["output"], np.array(service["outputs"]), rtol=0, atol=1e-5)
    if "labels" in service:
        np.testing.assert_array_equal(ran["label"], np.array(service["labels"]))
    else:
        assert "label" not in ran


def test_onnx_of_an_unknown_model_is_404(api):
    answer = api.get("/v1/models/mdl_missing/onnx")
    assert answer.status_code == 404
    assert "mdl_missing" in answer.json()["error"]["message"]
