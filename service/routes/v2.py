"""/v2: prediction over the Open Inference Protocol (KServe v2 REST), so inference clients
(KServe's, Triton's tritonclient.http, plain curl) work unchanged.

Same API keys and tenants as /v1, and the same statuses for the same failures (service.errors,
which answers /v2 paths in the protocol's `{"error": "message"}` form, 422 as 400). Inference
is the data plane's (service.serving); this module only hands it the request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.openapi_extra import BINARY, INFER_DOCS
from service.auth import authenticated
from service.deps import IdCheckedRoute, ServingDep, SettingsDep, StoreDep, TenantDep
from service.errors import ApiError
from service.readiness import readiness
from service.responses import JSONBytes
from service.state import state_of
from service.v2_schemas import (InferResponseOut, Live, ModelMetadata, ModelReady,
                                ProtocolError, Ready, ServerMetadata)

BINARY_EXTENSION = "binary_tensor_data"

ERRORS = {400: "the request does not fit the protocol or the model",
          401: "no API key, or one this service does not know",
          404: "no such model for this API key", 413: "more rows or bytes than allowed",
          503: "the model store (Redis) is unreachable; retry after Retry-After seconds",
          507: "the model store (Redis) is full"}


def errors(*statuses: int) -> dict[int, dict]:
    return {s: {"model": ProtocolError, "description": ERRORS[s]} for s in statuses}


router = APIRouter(route_class=IdCheckedRoute, prefix="/v2", tags=["inference protocol (v2)"])


# The first route of its router: routes are matched in order, and it is the hot path.
@router.post("/models/{model_id}/infer", response_class=Response, openapi_extra=INFER_DOCS,
             responses={200: {"model": InferResponseOut, "content": {BINARY: {}}, "description":
                              "JSON, or with binary outputs the JSON header then their bytes "
                              "(Inference-Header-Content-Length gives the header's length)"},
                        **errors(400, 401, 404, 413, 503)})
async def infer(request: Request):
    """Tensors in, tensors out: JSON `data`, or raw bytes with the binary tensor extension."""
    answer, headers = await state_of(request.app).serving.infer(
        authenticated(request.scope), request.path_params["model_id"], request.headers,
        request.body)
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


@router.get("/models/{model_id}", response_model=ModelMetadata, responses=errors(401, 404, 503))
def model_metadata(model_id: str, tenant: TenantDep, serving: ServingDep):
    return serving.metadata(tenant, model_id)


@router.get("/models/{model_id}/ready", response_model=ModelReady,
            responses=errors(401, 404, 503))
def model_ready(model_id: str, tenant: TenantDep, serving: ServingDep):
    """A model is ready once trained: it is loaded here, so it answers right away."""
    serving.model(tenant, model_id)
    return {"name": model_id, "ready": True}


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                  include_in_schema=False)
def unknown_route(path: str, request: Request):
    """Protocol-form 404 (or 405) for the /v2 paths that no route above serves."""
    full = f"/v2/{path}"
    for route in router.routes:
        if route.path != "/v2/{path:path}" and route.path_regex.match(full):
            allowed = ", ".join(sorted(route.methods))
            raise ApiError(405, f"{request.method} is not allowed on {full}; use {allowed}",
                           headers={"Allow": allowed})
    raise ApiError(404, f"no route {request.method} {full}; the inference protocol serves "
                        f"/v2, /v2/health/live|ready, /v2/models/{{id}}, /v2/models/{{id}}/ready"
                        f" and POST /v2/models/{{id}}/infer")
