"""/v1/models: read a trained model, its weights, and predict with it (never through the queue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from core.codec import array_to_bytes, arrays_to_npz
from engine.preparation import Preparation
from service import arrays
from service.deps import ModelCacheDep, StoreDep, TenantDep, authenticated, hot_route_docs
from service.errors import ApiError, not_found
from service.model_cache import LoadedModel
from service.predict import Budget, Prediction, answered, check_json_size, predict_outputs
from service.responses import JSONBytes
from service.schemas import ModelOut, PredictIn, PredictOut, WeightsOut, error_responses
from service.scored_csv import scored_csv
from service.table_inputs import csv_table, records_blocks, table_blocks

router = APIRouter(prefix="/v1/models", tags=["models"],
                   responses=error_responses(401, 404, 422, 503))

NPZ, NPY, CSV = "application/x-npz", "application/x-npy", "text/csv"
PREDICT_PATH = "/{model_id}/predict"
PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/PredictIn"}},
    NPY: {"schema": {"type": "string", "format": "binary",
                     "description": "a 2-D .npy array (rows x n_inputs); answered as .npy "
                                    "when Accept is application/x-npy"}},
    CSV: {"schema": {"type": "string", "description": (
        "for a model trained with preprocessing: a CSV with a header row, answered as the same "
        "CSV with the predictions appended")}}}}}


def loaded_model(models, tenant: str, model_id: str) -> LoadedModel:
    loaded = models.get(tenant, model_id)
    if loaded is None:
        raise not_found("model", model_id)
    return loaded


async def model_for(request: Request, tenant: str, model_id: str) -> LoadedModel:
    """The tenant's model, from this process's cache, else loaded off the event loop (a load
    takes up to a second for a large model)."""
    models = request.app.state.models
    loaded = models.peek(tenant, model_id)
    if loaded is None:
        loaded = await arrays.off_loop(models.get, tenant, model_id)
        if loaded is None:
            raise not_found("model", model_id)
    return loaded


@dataclass(frozen=True)
class Rows:
    """A predict body decoded: numbers (n, n_inputs), or for a model with a preparation its
    raw numeric columns (n, p) and category codes (n, q); a CSV body keeps its table, answered
    as a scored CSV."""

    X: np.ndarray
    codes: np.ndarray | None = None
    table: Any = None


def json_rows(body: bytes, preparation: Preparation | None, budget: Budget) -> Rows:
    """`{"inputs": [[...], ...]}`, or `{"inputs": [{column: value}, ...]}` (records) for a
    model with a preparation."""
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
    inputs = payload["inputs"]
    if preparation is not None and isinstance(inputs, list) and inputs and \
            isinstance(inputs[0], dict):
        return Rows(*records_blocks(inputs, preparation, budget.max_rows))
    return Rows(arrays.matrix(inputs, "inputs"))


def npy_rows(body: bytes, preparation: Preparation | None, budget: Budget) -> Rows:
    """A 2-D .npy array, rows x n_inputs."""
    return Rows(arrays.from_npy(body, "inputs"))


def csv_rows(body: bytes, preparation: Preparation | None, budget: Budget) -> Rows:
    """A CSV with a header row, for a model with a preparation (which names its columns)."""
    if preparation is None:
        raise ApiError(415, "body: CSV is read for models trained with preprocessing; send "
                            "JSON {\"inputs\": [[...]]} or .npy to this model", "body")
    table = csv_table(body, preparation, budget.max_rows)
    return Rows(*table_blocks(table, preparation), table=table)


Codec = Callable[[bytes, "Preparation | None", Budget], Rows]
INPUT_CODECS: dict[str, Codec] = {
    "application/json": json_rows, NPY: npy_rows, CSV: csv_rows}
"""Request media type -> its rows (no Content-Type: JSON)."""


def input_codec(content_type: str) -> Codec:
    """The codec of `application/json; charset=utf-8` and the like, or 415."""
    media = content_type.split(";")[0].strip().lower() or "application/json"
    codec = INPUT_CODECS.get(media)
    if codec is None:
        raise ApiError(415, f"body: Content-Type {media!r} is not read here; send one of "
                            f"{', '.join(INPUT_CODECS)}", "body")
    return codec


def rendered(model_id: str, rows: Rows, prediction: Prediction, accept: str,
             loaded: LoadedModel) -> tuple[str, bytes]:
    """(content type, body) of a predict answer: a CSV body's table with the predictions
    appended; the outputs as .npy when Accept asks for it; else JSON {model_id, outputs,
    labels?}."""
    answer = {"model_id": model_id, "outputs": prediction.outputs}
    if prediction.labels is not None:            # text classes as str (orjson writes numbers)
        labels = prediction.labels
        answer["labels"] = labels.tolist() if labels.dtype.kind in "US" else labels
    if rows.table is not None:
        return CSV, scored_csv(rows.table, loaded, answer)
    if NPY in accept:
        return NPY, array_to_bytes(prediction.outputs)
    return "application/json", orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


# The first route of its router: routes are matched in order, and it is the hot path.
@router.post(PREDICT_PATH, response_model=PredictOut,
             openapi_extra={**PREDICT_BODY, **hot_route_docs("model_id")},
             responses=error_responses(413, 415))
async def predict(request: Request):
    """Outputs for each input row, and labels for classifiers."""
    model_id, tenant = request.path_params["model_id"], authenticated(request.scope)
    headers = request.headers
    decode = input_codec(headers.get("content-type", ""))
    loaded = await model_for(request, tenant, model_id)
    body = await request.body()
    budget = Budget.of(request.app.state.settings)

    def respond(rows: Rows) -> tuple[str, bytes]:
        prediction = predict_outputs(loaded, rows.X, budget, "inputs", rows.codes)
        return rendered(model_id, rows, prediction, headers.get("accept", ""), loaded)

    content_type, answer = await answered(body, loaded, decode, (loaded.preparation, budget),
                                          respond, json_body=decode is json_rows)
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
