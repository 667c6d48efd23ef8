"""/v2: prediction over the Open Inference Protocol (KServe v2 REST), so inference clients
(KServe's, Triton's tritonclient.http, plain curl) work unchanged.

Same API keys and tenants as /v1; errors answer the protocol's `{"error": "message"}`.
"""

from __future__ import annotations

import numpy as np
import redis
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.preparation import ClassTarget
from service.deps import (ModelCacheDep, SettingsDep, StoreDep, TenantDep, authenticated,
                          hot_route_docs)
from service.errors import ApiError, validation_details
from service.model_cache import LoadedModel
from service.onnx_export import INPUT, LABEL, OUTPUT
from service.predict import Budget, Prediction, answered, predict_outputs
from service.responses import JSONBytes
from service.routes.health import readiness
from service.routes.models import loaded_model, model_for
from service.table_inputs import column_blocks
from service.v2_schemas import (InferRequestIn, InferResponseOut, Live, ModelMetadata,
                                ModelReady, ProtocolError, Ready, ServerMetadata, inline_schema)
from service.v2_tensors import (DATATYPE_OF, HEADER_LENGTH, InferRequest, bad_request,
                                encode_response, parse_request, select_outputs)

PLATFORM = "backprop_numpy"
"""What model metadata names as the platform: the service's own NumPy engine."""

BINARY_EXTENSION = "binary_tensor_data"

ERRORS = {400: "the request does not fit the protocol or the model",
          401: "no API key, or one this service does not know",
          404: "no such model for this API key", 413: "more rows or bytes than allowed",
          503: "the model store (Redis) is unreachable"}


def errors(*statuses: int) -> dict[int, dict]:
    return {s: {"model": ProtocolError, "description": ERRORS[s]} for s in statuses}


BINARY = "application/octet-stream"
INFER_DOCS = hot_route_docs("model_id")
INFER_DOCS["parameters"].append({
    "name": "inference-header-content-length", "in": "header", "required": False,
    "schema": {"type": "string"},
    "description": "length of the JSON header when binary tensors follow it"})
INFER_DOCS["requestBody"] = {"required": True, "content": {
    "application/json": {"schema": inline_schema(InferRequestIn)},
    BINARY: {"schema": {"type": "string", "format": "binary", "description": (
        "binary tensor extension: the JSON request (inputs with parameters.binary_data_size "
        "instead of data), then each such tensor's little-endian bytes in order; the "
        "Inference-Header-Content-Length header gives the JSON part's length")}}}}


def protocol_error(status: int, message: str, headers: dict | None = None) -> JSONBytes:
    return JSONBytes({"error": message}, status, headers=headers)


class ProtocolRoute(APIRoute):
    """Answers every error of a /v2 route, its dependencies' included, as `{"error": ...}`."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def answer_errors_in_protocol_form(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:                 # the protocol's "bad request" is 400
                status = 400 if exc.status == 422 else exc.status
                return protocol_error(status, exc.message, exc.headers)
            except RequestValidationError as exc:
                details = validation_details(list(exc.errors()))
                return protocol_error(400, "; ".join(f"{d['field']}: {d['message']}"
                                                     for d in details))
            except StarletteHTTPException as exc:
                return protocol_error(exc.status_code, str(exc.detail), exc.headers)
            except redis.RedisError as exc:
                return protocol_error(503, f"the model store (Redis) is unreachable ({exc}); "
                                           f"retry shortly", {"Retry-After": "2"})

        return answer_errors_in_protocol_form


router = APIRouter(prefix="/v2", tags=["inference protocol (v2)"], route_class=ProtocolRoute)


def per_column(loaded: LoadedModel) -> bool:
    """Whether the model takes one input per raw column: a preparation with text columns."""
    return loaded.preparation is not None and not loaded.preparation.all_numeric


def model_input(request: InferRequest, loaded: LoadedModel
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows, category codes or None): the one input tensor (its name may differ from `input`:
    KServe's examples say `input-0`), or for a model with text columns one tensor per column."""
    if per_column(loaded):
        return column_blocks(request.inputs, loaded.preparation)
    if len(request.inputs) != 1:
        raise bad_request(f"this model takes one input tensor ({INPUT!r}); got "
                          f"{len(request.inputs)}: {sorted(request.inputs)}")
    [X] = request.inputs.values()
    if X.dtype == object:
        raise bad_request(f"input {INPUT!r}: this model takes numbers (FP32 or FP64), not BYTES")
    return X, None


def model_outputs(prediction: Prediction) -> dict[str, np.ndarray]:
    produced = {OUTPUT: prediction.outputs}
    if prediction.labels is not None:
        labels = prediction.labels      # the classes' own values: numbers, or text (BYTES)
        produced[LABEL] = labels.astype(np.int64) if labels.dtype.kind in "iub" else labels
    return produced


# The first route of its router: routes are matched in order, and it is the hot path.
@router.post("/models/{model_id}/infer", response_class=Response, openapi_extra=INFER_DOCS,
             responses={200: {"model": InferResponseOut, "content": {BINARY: {}}, "description":
                              "JSON, or with binary outputs the JSON header then their bytes "
                              "(Inference-Header-Content-Length gives the header's length)"},
                        **errors(400, 401, 404, 413, 503)})
async def infer(request: Request):
    """Tensors in, tensors out: JSON `data`, or raw bytes with the binary tensor extension."""
    model_id = request.path_params["model_id"]
    loaded = await model_for(request, authenticated(request.scope), model_id)
    header_length = request.headers.get(HEADER_LENGTH)
    body = await request.body()
    budget = Budget.of(request.app.state.settings)

    def respond(parsed: InferRequest) -> tuple[bytes, dict[str, str]]:
        X, codes = model_input(parsed, loaded)
        prediction = predict_outputs(loaded, X, budget, f"input {INPUT!r}", codes)
        return encode_response(model_id, parsed.id, select_outputs(parsed,
                                                                   model_outputs(prediction)))

    answer, headers = await answered(body, loaded, parse_request, (header_length, budget),
                                     respond, json_body=header_length is None)
    return Response(answer, media_type=headers.pop("content-type"), headers=headers)


@router.get("/health/live", response_model=Live)
def live():
    return {"live": True}


@router.get("/health/ready", response_model=Ready,
            responses={503: {"model": Ready, "description": "not ready, with the reason"}})
def ready(store: StoreDep, settings: SettingsDep):
    ok, body = readiness(store, settings)
    return JSONBytes({"ready": True} if ok else {"ready": False, "error": body["reason"]},
                     200 if ok else 503)


@router.get("", response_model=ServerMetadata)
def server_metadata(request: Request):
    return {"name": request.app.title, "version": request.app.version,
            "extensions": [BINARY_EXTENSION]}


def label_datatype(loaded: LoadedModel) -> str:
    """INT64 class indices, or the type of the classes a preparation maps them to."""
    target = loaded.preparation.target if loaded.preparation is not None else None
    if not isinstance(target, ClassTarget):
        return "INT64"
    if any(isinstance(c, str) for c in target.classes):
        return "BYTES"
    return "FP64" if any(isinstance(c, float) for c in target.classes) else "INT64"


def output_metadata(loaded: LoadedModel) -> list[dict]:
    meta = loaded.meta
    outputs = [{"name": OUTPUT, "datatype": DATATYPE_OF[np.dtype(meta.dtype)],
                "shape": [-1, meta.n_outputs]}]
    if meta.task in ("classification", "multilabel"):
        multilabel = meta.task == "multilabel" and meta.n_outputs > 1
        outputs.append({"name": LABEL, "datatype": label_datatype(loaded),
                        "shape": [-1, meta.n_outputs] if multilabel else [-1]})
    return outputs


@router.get("/models/{model_id}", response_model=ModelMetadata, responses=errors(401, 404, 503))
def model_metadata(model_id: str, tenant: TenantDep, models: ModelCacheDep):
    loaded = loaded_model(models, tenant, model_id)
    number = DATATYPE_OF[np.dtype(loaded.meta.dtype)]
    if per_column(loaded):
        inputs = [{"name": c.name, "datatype": number if c.kind == "numeric" else "BYTES",
                   "shape": [-1, 1]} for c in loaded.preparation.columns]
    else:
        inputs = [{"name": INPUT, "datatype": number, "shape": [-1, loaded.input_width]}]
    return {"name": model_id, "platform": PLATFORM, "inputs": inputs,
            "outputs": output_metadata(loaded)}


@router.get("/models/{model_id}/ready", response_model=ModelReady,
            responses=errors(401, 404, 503))
def model_ready(model_id: str, tenant: TenantDep, models: ModelCacheDep):
    """A model is ready once trained: it is loaded here, so it answers right away."""
    loaded_model(models, tenant, model_id)
    return {"name": model_id, "ready": True}


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                  include_in_schema=False)
def unknown_route(path: str, request: Request):
    """Protocol-form 404 (or 405) for the /v2 paths that no route above serves."""
    full = f"/v2/{path}"
    for route in router.routes:
        if route.path != "/v2/{path:path}" and route.path_regex.match(full):
            allowed = ", ".join(sorted(route.methods))
            return protocol_error(405, f"{request.method} is not allowed on {full}; use "
                                       f"{allowed}", {"Allow": allowed})
    return protocol_error(404, f"no route {request.method} {full}; the inference protocol "
                               f"serves /v2, /v2/health/live|ready, /v2/models/{{id}}, "
                               f"/v2/models/{{id}}/ready and POST /v2/models/{{id}}/infer")
