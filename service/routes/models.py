"""/v1/models: read a trained model, its weights, and predict with it (never through the queue)."""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from service.responses import JSONBytes

from service import arrays, offload
from service.deps import ModelCacheDep, StoreDep, TenantDep, hot_route_docs, request_tenant
from service.errors import ApiError, not_found
from service.model_cache import LoadedModel
from service.predict import Budget, Prediction, check_json_size, light, predict_outputs
from service.schemas import ModelOut, PredictIn, PredictOut, WeightsOut, error_responses
from worker.codec import array_to_bytes, arrays_to_npz

router = APIRouter(prefix="/v1/models", tags=["models"],
                   responses=error_responses(401, 404, 422, 503))

NPZ, NPY = "application/x-npz", "application/x-npy"
PREDICT_PATH = "/{model_id}/predict"
PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/PredictIn"}},
    NPY: {"schema": {"type": "string", "format": "binary",
                     "description": "a 2-D .npy array (rows x n_inputs); answered as .npy "
                                    "when Accept is application/x-npy"}}}}}


def loaded_model(models, tenant: str, model_id: str) -> LoadedModel:
    loaded = models.get(tenant, model_id)
    if loaded is None:
        raise not_found("model", model_id)
    return loaded


async def model_for(request: Request, tenant: str, model_id: str) -> LoadedModel:
    """The tenant's model, from this process's cache, else loaded in a work thread (a load
    takes up to a second for a large model: never on the event loop)."""
    models = request.app.state.models
    loaded = models.peek(tenant, model_id)
    if loaded is None:
        loaded = await offload.run(request, partial(models.get, tenant, model_id))
        if loaded is None:
            raise not_found("model", model_id)
    return loaded


def json_inputs(body: bytes, budget: Budget) -> np.ndarray:
    """`{"inputs": [[...], ...]}`: rows of numbers."""
    check_json_size(body, budget, "inputs")
    payload = arrays.parse_json(body)
    if not isinstance(payload, dict):
        raise ApiError(422, "body: must be a JSON object {\"inputs\": [[...], ...]}", "body")
    unknown = sorted(set(payload) - {"inputs"})
    if unknown:
        raise ApiError(422, f"{unknown[0]}: not a field of this body; send only "
                            f"{{\"inputs\": [[...], ...]}}", unknown[0])
    if "inputs" not in payload:
        raise ApiError(422, "inputs: required (rows x n_inputs numbers)", "inputs")
    return arrays.matrix(payload["inputs"], "inputs")


def npy_inputs(body: bytes, budget: Budget) -> np.ndarray:
    """A 2-D .npy array, rows x n_inputs."""
    return arrays.from_npy(body, "inputs")


INPUT_CODECS: dict[str, Callable[[bytes, Budget], np.ndarray]] = {
    "application/json": json_inputs, NPY: npy_inputs}
"""Request media type -> the input rows it carries (no Content-Type: JSON)."""


def input_codec(content_type: str) -> Callable[[bytes, Budget], np.ndarray]:
    """The codec of `application/json; charset=utf-8` and the like, or 415."""
    media = content_type.split(";")[0].strip().lower() or "application/json"
    codec = INPUT_CODECS.get(media)
    if codec is None:
        raise ApiError(415, f"body: Content-Type {media!r} is not read here; send one of "
                            f"{', '.join(INPUT_CODECS)}", "body")
    return codec


def rendered(model_id: str, prediction: Prediction, accept: str) -> tuple[str, bytes]:
    """(content type, body) of a predict answer: the outputs as .npy when Accept asks for it,
    else JSON {model_id, outputs, labels?}."""
    if NPY in accept:
        return NPY, array_to_bytes(prediction.outputs)
    answer = {"model_id": model_id, "outputs": prediction.outputs}
    if prediction.labels is not None:
        answer["labels"] = prediction.labels
    return "application/json", orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


# The first route of its router: routes are matched in order, and it is the hot path.
@router.post(PREDICT_PATH, response_model=PredictOut,
             openapi_extra={**PREDICT_BODY, **hot_route_docs("model_id")},
             responses=error_responses(413, 415))
async def predict(request: Request):
    """Outputs for each input row, and labels for classifiers."""
    model_id, tenant = request.path_params["model_id"], request_tenant(request)
    headers = request.headers
    decode = input_codec(headers.get("content-type", ""))
    loaded = await model_for(request, tenant, model_id)
    body = await request.body()
    budget = Budget.of(request.app.state.settings)

    def work() -> tuple[str, bytes]:
        prediction = predict_outputs(loaded, decode(body, budget), budget, "inputs")
        return rendered(model_id, prediction, headers.get("accept", ""))

    content_type, answer = await offload.run(request, work, light(body, loaded))
    return Response(answer, media_type=content_type)


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, tenant: TenantDep, models: ModelCacheDep):
    return loaded_model(models, tenant, model_id).meta


@router.get("/{model_id}/weights", response_model=WeightsOut,
            responses={200: {"content": {NPZ: {}}}})
def get_weights(model_id: str, request: Request, tenant: TenantDep, models: ModelCacheDep):
    """JSON lists, or NPZ (W0, b0, W1, ...) with `Accept: application/x-npz`."""
    net = loaded_model(models, tenant, model_id).net
    if NPZ in request.headers.get("accept", ""):
        named = {}
        for i, (W, b) in enumerate(net.params):
            named[f"W{i}"], named[f"b{i}"] = np.asarray(W), np.asarray(b)
        return Response(arrays_to_npz(named), media_type=NPZ)
    return JSONBytes({"model_id": model_id, "layers": [
        {"W": np.asarray(W, dtype=np.float64), "b": np.asarray(b, dtype=np.float64)}
        for W, b in net.params]})


@router.delete("/{model_id}", status_code=204)
def delete_model(model_id: str, store: StoreDep, tenant: TenantDep, models: ModelCacheDep):
    if not store.delete_model(tenant, model_id):
        raise not_found("model", model_id)
    models.evict(model_id)
    return Response(status_code=204)


# PredictIn is referenced by PREDICT_BODY's $ref; keep it in the OpenAPI components.
__all__ = ["router", "PredictIn"]
