"""/v1/models: read a trained model, its weights, and predict with it (never through the queue).
Predict is the data plane's (service.serving); this module only hands it the request."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request, Response

from core.codec import arrays_to_npz
from service.openapi_extra import PREDICT_DOCS
from service.auth import authenticated
from service.deps import ModelCacheDep, ServingDep, StoreDep, TenantDep
from service.errors import not_found
from service.responses import JSONBytes
from service.schemas import ModelOut, PredictIn, PredictOut, WeightsOut, error_responses
from service.state import state_of

router = APIRouter(prefix="/v1/models", tags=["models"],
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
            responses={200: {"content": {NPZ: {}}}})
def get_weights(model_id: str, request: Request, tenant: TenantDep, serving: ServingDep):
    """JSON lists, or NPZ (W0, b0, W1, ...) with `Accept: application/x-npz`."""
    net = serving.model(tenant, model_id).net
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


# PredictIn is referenced by PREDICT_DOCS's $ref; keep it in the OpenAPI components.
__all__ = ["router", "PredictIn"]
