"""Request and response bodies of the HTTP API (the network/training specs are the engine's)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.dataset_schema import ColumnInfo, TargetInfo
from core.records import JobError, JobStatus
import engine
from engine.preparation import PreparationSpec

Matrix = list[list[float]]
Targets = list[float] | list[list[float]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetFields(Strict):
    """A JSON dataset upload as first checked: X and y stay parsed JSON for service.arrays to
    convert, since a pydantic pass over every number as well doubled a big upload's time."""
    name: str = Field("dataset", min_length=1, max_length=200)
    X: Any = Field(..., description="rows x features")
    y: Any = Field(..., description="class labels, one-hot rows, or regression targets")
    dtype: Literal["float32", "float64"] = "float32"


class DatasetIn(DatasetFields):
    """The documented upload body; also names the element at fault when conversion fails."""
    X: Matrix = Field(..., description="rows x features")
    y: Targets = Field(..., description="class labels, one-hot rows, or regression targets")


class RecordsIn(Strict):
    """A table as JSON records: one object per row, `null` or an absent key for missing."""
    name: str = Field("dataset", min_length=1, max_length=200)
    records: list[dict[str, Any]] = Field(..., description="one object per row")
    target: str | None = Field(None, description="the target column(s), comma-separated "
                                                 "(default: the last column)")
    ignore: list[str] = Field(default_factory=list, description="columns to leave out")
    columns: dict[str, str] = Field(default_factory=dict,
                                    description="declared kinds: numeric, categorical, ignored")
    dtype: Literal["float32", "float64"] = "float32"


class DatasetOut(BaseModel):
    id: str
    name: str
    n_samples: int
    n_features: int = Field(..., description="feature columns (not ignored)")
    n_outputs: int = Field(..., description="target columns (1 for a label vector)")
    classes: int | None = Field(None, description="how many classes the target can have")
    columns: list[ColumnInfo] = Field(..., description="every column but the target, in order")
    target: TargetInfo
    dtype: str
    bytes: int
    sha256: str = Field(..., description="SHA-256 of X's then y's raw bytes as stored")
    source: str
    created_at: float


class InlineData(Strict):
    X: Matrix
    y: Targets


class JobIn(Strict):
    network: engine.NetworkSpec | None = Field(
        None, description="left out: chosen from the data (README: Defaults): ReLU hidden "
                          "layers (one of 100 units, two of 200 from 10,000 rows), the output "
                          "layer and loss of the target (classes: softmax + cross_entropy; "
                          "numbers: identity + squared_error)")
    training: engine.TrainingSpec | None = Field(
        None, description="left out: adam at 0.005, batches of 32 (128 from 10,000 rows), "
                          "validation_split 0.1 with early stopping (patience 20, best "
                          "weights kept), at most 200 epochs. Given: its own fields' "
                          "defaults (sgd, 10 epochs) apply")
    dataset_id: str | None = Field(None, max_length=100)
    data: InlineData | None = Field(None, description="small inline data set instead of dataset_id")
    preprocessing: PreparationSpec = Field(
        default_factory=PreparationSpec, description="\"auto\" (default): impute, standardize, "
        "one-hot encode and map classes, fitted on the training rows; \"none\": the numbers as "
        "they are; or {\"mode\": \"auto\", \"ignore\": [columns]}")
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = Field(0, ge=0, le=2**32 - 1, description="weight-initialisation seed")
    timeout_s: int | None = Field(None, ge=1, description="time limit (default from settings)")


class Progress(BaseModel):
    epoch: int
    epochs: int
    fraction: float
    elapsed_s: float | None
    eta_s: float | None


class Waiting(BaseModel):
    """Why a queued job has not been handed to a worker yet."""
    position: int = Field(..., description="1 = the next of this tenant's jobs to be queued")
    reason: str


class JobOut(BaseModel):
    id: str
    status: JobStatus
    dataset_id: str | None
    network: dict[str, Any]
    training: dict[str, Any]
    device: str
    dtype: str
    progress: Progress
    metrics: dict[str, Any] | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: JobError | None
    model_id: str | None
    kept_epoch: int | None = Field(
        None, description="the epoch whose weights the model keeps (early stopping restores "
                          "the best); `metrics` are that epoch's")
    restarts: int
    cancel_requested: bool
    sweep_id: str | None = Field(None, description="the sweep this job is a trial of")
    waiting: Waiting | None = Field(
        None, description="set while the job waits in its tenant's backlog "
                          "(BACKPROP_MAX_ACTIVE_JOBS_PER_TENANT)")


class JobList(BaseModel):
    jobs: list[JobOut]
    next: str | None = Field(None, description="cursor of the next page: pass it as ?before=")


class DatasetSummaryOut(BaseModel):
    """A dataset as listed: its counts, not its columns (GET /v1/datasets/{id} has those)."""
    id: str
    name: str
    n_samples: int
    n_features: int = Field(..., description="feature columns (not ignored)")
    n_outputs: int = Field(..., description="target columns (1 for a label vector)")
    classes: int | None = Field(None, description="how many classes the target can have")
    dtype: str
    bytes: int
    sha256: str
    source: str
    created_at: float


class DatasetList(BaseModel):
    datasets: list[DatasetSummaryOut] = Field(
        ..., description="newest first, without their columns and target: read one dataset "
                         "for those")
    next: str | None = Field(None, description="cursor of the next page: pass it as ?before=")


class HistoryOut(BaseModel):
    job_id: str
    status: JobStatus
    kept_epoch: int | None = Field(None, description="the epoch whose weights the model keeps")
    epochs: list[dict[str, Any]] = Field(
        ..., description="per epoch: epoch, loss, val_loss, metric, seconds, grad_norms, ...")


class ModelOut(BaseModel):
    id: str
    job_id: str
    network: dict[str, Any]
    n_inputs: int = Field(..., description="the network's input units")
    n_outputs: int
    input_columns: list[dict[str, Any]] | None = Field(
        None, description="the raw columns predict takes, with kinds and categories (models "
                          "trained with preprocessing)")
    classes: list[Any] | None = Field(None, description="what each output unit answers")
    target: str | None = Field(None, description="the target column(s)")
    task: Literal["classification", "multilabel", "regression"]
    dtype: str
    epochs_trained: int
    kept_epoch: int | None = Field(None, description="the epoch whose weights the model "
                                                     "keeps; `metrics` are that epoch's")
    metrics: dict[str, Any] | None
    test_metrics: dict[str, Any] | None = Field(
        None, description="scores on the job's test_split rows (as /evaluate reports them)")
    test_confusion_matrix: dict[str, Any] | None = None
    test_rows: int = 0
    feature_importance: list[dict[str, Any]] | None = Field(
        None, description="[{column, importance}] per raw input column: how much the "
                          "training metric worsens when the column is shuffled")
    importance_rows: Literal["test", "validation"] | None = Field(
        None, description="the rows feature_importance was measured on")
    created_at: float


class PredictIn(Strict):
    inputs: Matrix = Field(..., description="rows x n_inputs")


class PredictOut(BaseModel):
    model_id: str
    outputs: list[list[float]]
    labels: list[int] | list[list[int]] | None = None


class LayerWeights(BaseModel):
    W: list[list[float]] = Field(..., description="(units_out, units_in)")
    b: list[float] = Field(..., description="(units_out,)")


class WeightsOut(BaseModel):
    model_id: str
    layers: list[LayerWeights]


class ErrorBody(BaseModel):
    status: int
    message: str
    field: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


ERROR_MEANINGS = {
    401: "no API key, or one this service does not know (see WWW-Authenticate)",
    404: "no such record for this API key (another tenant's records read as missing)",
    409: "the record is in a state that does not allow this (e.g. the job still runs)",
    413: "the body, the data set or the request is over a configured limit",
    415: "the body's Content-Type is not one this operation reads",
    422: "a field is missing, has the wrong type or value, or the data do not fit; "
         "`error.field` names it",
    429: "too many of this tenant's requests of this kind at once (the message names the "
         "limit); retry after Retry-After seconds",
    503: "the job store (Redis) is unreachable; retry after Retry-After seconds",
}


def error_responses(*statuses: int) -> dict[int, dict]:
    """OpenAPI `responses` for error statuses, each with the ErrorOut body and its meaning."""
    return {status: {"model": ErrorOut, "description": ERROR_MEANINGS[status]}
            for status in statuses}


def document_errors(openapi: dict) -> dict:
    """Make the OpenAPI document list every error a /v1 operation can answer, as the JSON that
    the error handlers send (whatever the route's own media type): 401 when it takes a key, 404
    when a path names a record, 413 when it takes a body (BACKPROP_MAX_BODY_BYTES), and 422 and
    503 everywhere."""
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ErrorBody):
        components.setdefault(model.__name__, model.model_json_schema(
            ref_template="#/components/schemas/{model}"))
    for path, operations in openapi.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for operation in operations.values():
            statuses = {422, 503}
            statuses |= {401} if operation.get("security") else set()
            statuses |= {404} if "{" in path else set()
            statuses |= {413} if "requestBody" in operation else set()
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(str(status), {"description": ERROR_MEANINGS[status]})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    return openapi
