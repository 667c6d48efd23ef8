"""/v1/models/{id}/evaluate: a model's scores on rows with known targets (service.evaluation)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from service import pools
from service.deps import IdCheckedRoute, StoreDep, TenantDep
from service.errors import ApiError, not_found
from service.evaluation import evaluate
from service.schemas import error_responses
from service.serving.predict import Budget, check_json_size
from service.state import state_of

router = APIRouter(route_class=IdCheckedRoute, prefix="/v1/models", tags=["models"],
                   responses=error_responses(401, 404, 413, 415, 422, 503))

MEDIA_TYPES = ("application/json", "text/csv")
EVALUATE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"oneOf": [
        {"type": "object", "required": ["records"], "additionalProperties": False,
         "properties": {"records": {"type": "array", "items": {"type": "object"},
                                    "description": "one object per row, the target included"}}},
        {"type": "object", "required": ["dataset_id"], "additionalProperties": False,
         "properties": {"dataset_id": {"type": "string"}}}]}},
    "text/csv": {"schema": {"type": "string", "description": "a CSV with a header row and "
                                                             "the target column(s)"}}}}}


class ConfusionMatrix(BaseModel):
    labels: list[Any] = Field(..., description="the classes, in the order of rows and columns")
    counts: list[list[int]] = Field(..., description="row = true class, column = predicted")


class EvaluationOut(BaseModel):
    n_rows: int
    metrics: dict[str, Any] = Field(..., description=(
        "classifiers: accuracy, balanced_accuracy, log_loss, f1_macro, precision and recall "
        "per class, roc_auc (two classes); regressors: r2, rmse, mae in the target's units"))
    confusion_matrix: ConfusionMatrix | None = None


@router.post("/{model_id}/evaluate", response_model=EvaluationOut,
             openapi_extra=EVALUATE_BODY)
async def evaluate_model(model_id: str, request: Request, store: StoreDep, tenant: TenantDep):
    """Score the model on rows whose targets are known: JSON records or a CSV with the target
    column(s), or a stored dataset; the metrics are computed from what /predict answers."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower() \
        or "application/json"
    if media not in MEDIA_TYPES:
        raise ApiError(415, f"body: Content-Type {media!r} is not read here; send one of "
                            f"{', '.join(MEDIA_TYPES)}", "body")
    state = state_of(request.app)
    loaded = await pools.off_loop(state.models.get, tenant, model_id, tenant=tenant)
    if loaded is None:
        raise not_found("model", model_id)
    body = await request.body()
    budget = Budget.of(state.settings)
    if media == "application/json":
        check_json_size(body, budget, "records")
    return await pools.off_loop(evaluate, loaded, store, tenant, body, media, budget,
                                tenant=tenant)
