"""/v1/models: read a trained model, its weights, and predict with it (never through the queue)."""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from service.responses import JSONBytes

from service import arrays
from service.deps import ModelCacheDep, SettingsDep, StoreDep, TenantDep
from service.errors import ApiError, not_found
from service.model_cache import LoadedModel, predict_payload
from service.scored_csv import scored_csv
from service.table_inputs import csv_table, records_blocks, table_blocks
from service.schemas import ModelOut, PredictIn, PredictOut, WeightsOut, error_responses
from worker.codec import array_to_bytes, arrays_to_npz

router = APIRouter(prefix="/v1/models", tags=["models"],
                   responses=error_responses(401, 404, 422, 503))

NPZ, NPY, CSV = "application/x-npz", "application/x-npy", "text/csv"
PREDICT_MEDIA = ("", "application/json", NPY, CSV)
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


def predict_inputs(media: str, body: bytes, loaded: LoadedModel,
                   max_rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(numeric rows, category codes or None) from a JSON body `{"inputs": [[...]]}` or
    `{"inputs": [{column: value}]}` (records, for a model with a preparation), or an .npy body."""
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
        inputs = payload["inputs"]
        if loaded.preparation is not None and isinstance(inputs, list) and inputs and \
                isinstance(inputs[0], dict):
            return records_blocks(inputs, loaded.preparation, max_rows)
        X = arrays.matrix(inputs, "inputs")
    width = loaded.input_width
    if X.ndim != 2 or X.shape[1] != width:
        raise ApiError(422, f"inputs: each row needs {width} values (the model's input "
                            f"width); got shape {list(X.shape)}", "inputs")
    if X.shape[0] > max_rows:
        raise ApiError(413, f"inputs: {X.shape[0]} rows; at most {max_rows} per request "
                            f"(BACKPROP_MAX_PREDICT_ROWS)", "inputs")
    if loaded.preparation is not None and not loaded.preparation.all_numeric:
        raise ApiError(422, "inputs: this model takes text columns "
                            f"{[c.name for c in loaded.preparation.categorical]}; send records "
                            "{\"inputs\": [{\"column\": value, ...}]} or a CSV body", "inputs")
    return arrays.as_float(X, "inputs", loaded.meta["dtype"]), None


def predicted(loaded: LoadedModel, media: str, body: bytes, max_rows: int) -> dict:
    """The predict answer ({model_id, outputs, labels?}) for a request body of type `media`.
    Shared with service/fast_predict.py, which answers the common case without FastAPI."""
    return predict_payload(loaded, *predict_inputs(media, body, loaded, max_rows))


def predicted_csv(loaded: LoadedModel, body: bytes, max_rows: int) -> bytes:
    """A CSV body scored: its rows with the predicted label (classifiers) or value, and the
    class probabilities (softmax outputs), appended as columns."""
    if loaded.preparation is None:
        raise ApiError(415, "body: CSV is read for models trained with preprocessing; send "
                            "JSON {\"inputs\": [[...]]} or .npy to this model", "body")
    table = csv_table(body, loaded.preparation, max_rows)
    payload = predict_payload(loaded, *table_blocks(table, loaded.preparation))
    return scored_csv(table, loaded, payload)


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
    body = await request.body()
    if media == CSV:
        return Response(await run_in_threadpool(predicted_csv, loaded, body,
                                                settings.max_predict_rows), media_type=CSV)
    payload = predicted(loaded, media, body, settings.max_predict_rows)
    content_type, answer = rendered(payload, request.headers.get("accept", ""))
    return Response(answer, media_type=content_type)


@router.delete("/{model_id}", status_code=204)
def delete_model(model_id: str, store: StoreDep, tenant: TenantDep, models: ModelCacheDep):
    if not store.delete_model(tenant, model_id):
        raise not_found("model", model_id)
    models.evict(model_id)
    return Response(status_code=204)


# PredictIn is referenced by PREDICT_BODY's $ref; keep it in the OpenAPI components.
__all__ = ["router", "PredictIn"]
