"""/v1/models: read a trained model, its weights, and predict with it (never through the queue).
Predict is the data plane's (service.serving); this module only hands it the request."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.openapi_extra import PREDICT_DOCS
from service.auth import authenticated
from service.deps import IdCheckedRoute, ModelCacheDep, ServingDep, StoreDep, TenantDep
from service.errors import not_found
from service.exports import json_weights_stream, npz_weights_stream, streamed, take_slot
from service.schemas import ModelOut, PredictIn, PredictOut, WeightsOut, error_responses
from service.state import state_of

router = APIRouter(route_class=IdCheckedRoute, prefix="/v1/models", tags=["models"],
                   responses=error_responses(401, 404, 422, 503))

NPZ = "application/x-npz"


# The first route of its router: routes are matched in order, and it is the hot path. It
# declares no FastAPI parameters (their machinery cost ~50 us of a 250 us one-row predict).
@router.post("/{model_id}/predict", response_model=PredictOut, openapi_extra=PREDICT_DOCS,
             responses=error_responses(413, 415))
async def predict(request: Request):
    """Outputs for each input row, and labels for classifiers."""
    media_type, answer = await state_of(request.app).serving.predict(
        authenticated(request.scope), request.path_params["model_id"], request.headers,
        request.body)
    return Response(answer, media_type=media_type)


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, tenant: TenantDep, serving: ServingDep):
    return serving.model(tenant, model_id).meta


@router.get("/{model_id}/weights", response_model=WeightsOut,
            responses={200: {"content": {NPZ: {}}}, **error_responses(429)})
async def get_weights(model_id: str, request: Request, tenant: TenantDep, serving: ServingDep):
    """JSON lists, or NPZ (W0, b0, W1, ...) with `Accept: application/x-npz`. Streamed,
    written off the event loop; at most BACKPROP_MAX_EXPORTS_PER_TENANT exports of a tenant
    at once per API process (429 with Retry-After past that)."""
    slots = take_slot(state_of(request.app).export_slots, tenant)
    try:
        # The live arrays, not `params` (a copy of them all): the export copies a block at a
        # time. The API loads models on the CPU (NumPy arrays).
        params = (await serving.loaded(tenant, model_id)).net.weights
    except BaseException:
        slots.give(tenant)
        raise
    if NPZ in request.headers.get("accept", ""):
        return streamed(slots, tenant, npz_weights_stream(params), NPZ)
    return streamed(slots, tenant, json_weights_stream(model_id, params), "application/json")


@router.delete("/{model_id}", status_code=204)
def delete_model(model_id: str, store: StoreDep, tenant: TenantDep, models: ModelCacheDep):
    if not store.delete_model(tenant, model_id):
        raise not_found("model", model_id)
    models.evict(model_id)
    return Response(status_code=204)


# PredictIn is referenced by PREDICT_DOCS's $ref; keep it in the OpenAPI components.
__all__ = ["router", "PredictIn"]
