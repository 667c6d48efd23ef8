"""/v1/models: read a trained model, its weights, and predict with it (never through the queue)."""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from service.responses import JSONBytes

from service import arrays
from service.deps import ModelCacheDep, SettingsDep, StoreDep, TenantDep
from service.errors import ApiError, not_found
from service.model_cache import LoadedModel, predict_payload
from service.schemas import ModelOut, PredictIn, PredictOut, WeightsOut, error_responses
from worker.codec import array_to_bytes, arrays_to_npz

router = APIRouter(prefix="/v1/models", tags=["models"],
                   responses=error_responses(401, 404, 422, 503))

NPZ, NPY = "application/x-npz", "application/x-npy"
PREDICT_MEDIA = ("", "application/json", NPY)
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


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return content_type.split(";")[0].strip().lower()


def check_media(media: str) -> None:
    if media not in PREDICT_MEDIA:
        raise ApiError(415, f"body: Content-Type {media!r} is not read here; send JSON "
                            f"{{\"inputs\": [[...]]}} or a .npy array as {NPY}", "body")


def predict_inputs(media: str, body: bytes, n_inputs: int, max_rows: int) -> np.ndarray:
    """The rows to predict from a JSON body `{"inputs": [[...]]}` or an .npy body."""
    if media == NPY:
        X = arrays.from_npy(body, "inputs")
    else:
        payload = arrays.parse_json(body)
        if not isinstance(payload, dict):
            raise ApiError(422, "body: must be a JSON object {\"inputs\": [[...], ...]}", "body")
        unknown = sorted(set(payload) - {"inputs"})
        if unknown:
            raise ApiError(422, f"{unknown[0]}: not a field of this body; send only "
                                f"{{\"inputs\": [[...], ...]}}", unknown[0])
        if "inputs" not in payload:
            raise ApiError(422, "inputs: required (rows x n_inputs numbers)", "inputs")
        X = arrays.matrix(payload["inputs"], "inputs")
    if X.ndim != 2 or X.shape[1] != n_inputs:
        raise ApiError(422, f"inputs: each row needs {n_inputs} values (the model's input "
                            f"width); got shape {list(X.shape)}", "inputs")
    if X.shape[0] > max_rows:
        raise ApiError(413, f"inputs: {X.shape[0]} rows; at most {max_rows} per request "
                            f"(BACKPROP_MAX_PREDICT_ROWS)", "inputs")
    return X


def predicted(loaded: LoadedModel, media: str, body: bytes, max_rows: int) -> dict:
    """The predict answer ({model_id, outputs, labels?}) for a request body of type `media`.
    Shared with service/fast_predict.py, which answers the common case without FastAPI."""
    X = predict_inputs(media, body, loaded.meta["n_inputs"], max_rows)
    return predict_payload(loaded, arrays.as_float(X, "inputs", loaded.meta["dtype"]))


def rendered(payload: dict, accept: str) -> tuple[str, bytes]:
    """(content type, body) of a predict answer: the outputs as .npy when Accept asks for it,
    else the payload as JSON (what JSONBytes renders)."""
    if NPY in accept:
        return NPY, array_to_bytes(payload["outputs"])
    return "application/json", orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


@router.post(PREDICT_PATH, response_model=PredictOut, openapi_extra=PREDICT_BODY,
             responses=error_responses(413, 415))
async def predict(model_id: str, request: Request, tenant: TenantDep, models: ModelCacheDep,
                  settings: SettingsDep):
    """Outputs for each input row, and labels for classifiers."""
    loaded = loaded_model(models, tenant, model_id)
    media = media_type(request.headers.get("content-type", ""))
    check_media(media)
    payload = predicted(loaded, media, await request.body(), settings.max_predict_rows)
    content_type, body = rendered(payload, request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


@router.delete("/{model_id}", status_code=204)
def delete_model(model_id: str, store: StoreDep, tenant: TenantDep, models: ModelCacheDep):
    if not store.delete_model(tenant, model_id):
        raise not_found("model", model_id)
    models.evict(model_id)
    return Response(status_code=204)


# PredictIn is referenced by PREDICT_BODY's $ref; keep it in the OpenAPI components.
__all__ = ["router", "PredictIn"]
