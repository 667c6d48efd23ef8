"""Request and response bodies of the HTTP API (the network/training specs are the engine's)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import engine

Matrix = list[list[float]]
Targets = list[float] | list[list[float]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetIn(Strict):
    name: str = Field("dataset", min_length=1, max_length=200)
    X: Matrix = Field(..., description="rows x features")
    y: Targets = Field(..., description="class labels, one-hot rows, or regression targets")
    dtype: Literal["float32", "float64"] = "float32"


class DatasetOut(BaseModel):
    id: str
    name: str
    n_samples: int
    n_features: int
    n_outputs: int = Field(..., description="target columns (1 for a label vector)")
    classes: int | None = Field(None, description="distinct integer labels, when y is labels")
    dtype: str
    bytes: int
    sha256: str = Field(..., description="SHA-256 of X's then y's raw bytes as stored")
    source: str
    created_at: float


class InlineData(Strict):
    X: Matrix
    y: Targets


class JobIn(Strict):
    network: engine.NetworkSpec
    training: engine.TrainingSpec = Field(default_factory=engine.TrainingSpec)
    dataset_id: str | None = Field(None, max_length=100)
    data: InlineData | None = Field(None, description="small inline data set instead of dataset_id")
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


class JobError(BaseModel):
    message: str
    epoch: int | None = None


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
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
    restarts: int
    cancel_requested: bool


class JobList(BaseModel):
    jobs: list[JobOut]


class DatasetList(BaseModel):
    datasets: list[DatasetOut]


class HistoryOut(BaseModel):
    job_id: str
    status: str
    epochs: list[dict[str, Any]] = Field(
        ..., description="per epoch: epoch, loss, val_loss, metric, seconds, grad_norms, ...")


class ModelOut(BaseModel):
    id: str
    job_id: str
    network: dict[str, Any]
    n_inputs: int
    n_outputs: int
    task: Literal["classification", "multilabel", "regression"]
    dtype: str
    epochs_trained: int
    metrics: dict[str, Any] | None
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
