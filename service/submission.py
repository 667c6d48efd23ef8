"""Checking a job before it is queued: limits, data fit, and the job record the worker reads."""

from __future__ import annotations

import math
import time

import numpy as np

import engine
from service import arrays
from service.budgets import check_training_budget
from service.errors import ApiError
from service.schemas import JobIn
from worker import queues
from worker.data import checked_arrays
from worker.settings import Settings
from worker.status import JobStatus, new_id
from worker.store import Store


def parameter_count(spec: engine.NetworkSpec, n_inputs: int) -> int:
    widths = [n_inputs] + [layer.units for layer in spec.layers]
    return sum(w_in * w_out + w_out for w_in, w_out in zip(widths, widths[1:]))


def non_finite_field(value, path: str) -> str | None:
    """The path of the first NaN or infinite number in a spec (JSON `Infinity`, `1e400`)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items = (value.items() if isinstance(value, dict) else
             enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found = non_finite_field(item, f"{path}[{key}]" if isinstance(key, int) else
                                 f"{path}.{key}")
        if found:
            return found
    return None


def check_spec_limits(settings: Settings, job: JobIn) -> None:
    spec, training = job.network, job.training
    for name in ("network", "training"):
        field = non_finite_field(getattr(job, name).model_dump(), name)
        if field:
            raise ApiError(422, f"{field}: must be a finite number, not NaN or infinite", field)
    if training.seed is not None and training.seed < 0:  # NumPy's generators refuse it
        raise ApiError(422, f"training.seed: {training.seed}; give a seed >= 0, or leave it "
                            f"out to shuffle with the job's seed", "training.seed")
    if len(spec.layers) > settings.max_layers:
        raise ApiError(422, f"network.layers: {len(spec.layers)} layers; at most "
                            f"{settings.max_layers} (BACKPROP_MAX_LAYERS)", "network.layers")
    for i, layer in enumerate(spec.layers):
        if layer.units > settings.max_units:
            raise ApiError(422, f"network.layers[{i}].units: {layer.units} units; at most "
                                f"{settings.max_units} (BACKPROP_MAX_UNITS)",
                           f"network.layers[{i}].units")
    if training.epochs > settings.max_epochs:
        raise ApiError(422, f"training.epochs: {training.epochs}; at most {settings.max_epochs} "
                            f"(BACKPROP_MAX_EPOCHS)", "training.epochs")
    if training.batch_size is not None and training.batch_size > settings.max_batch_size:
        raise ApiError(422, f"training.batch_size: {training.batch_size}; at most "
                            f"{settings.max_batch_size} (BACKPROP_MAX_BATCH_SIZE)",
                       "training.batch_size")
    if job.timeout_s is not None and job.timeout_s > settings.job_timeout_s:
        raise ApiError(422, f"timeout_s: {job.timeout_s}; at most {settings.job_timeout_s} "
                            f"(BACKPROP_JOB_TIMEOUT_S)", "timeout_s")


def check_data_fit(spec: engine.NetworkSpec, X: np.ndarray, y: np.ndarray, field: str,
                   dtype: str) -> None:
    try:
        checked_arrays(spec, X, y, dtype)
    except ValueError as exc:
        raise ApiError(422, f"{field}: {exc}", field) from None


def resolve_data(store: Store, settings: Settings, tenant: str, job: JobIn):
    """(n_samples, n_inputs, inline arrays or None), after checking the data fits the network."""
    if (job.dataset_id is None) == (job.data is None):
        raise ApiError(422, "give exactly one of dataset_id (an uploaded dataset) or data "
                            "({\"X\", \"y\"} inline)", "dataset_id")
    if job.data is not None:
        X = arrays.matrix(job.data.X, "data.X")
        y = arrays.vector_or_matrix(job.data.y, "data.y")
        arrays.rows_match(X, y, "data.X", "data.y")
        if X.shape[0] > settings.max_inline_rows:
            raise ApiError(413, f"data.X: {X.shape[0]} inline rows; at most "
                                f"{settings.max_inline_rows} (BACKPROP_MAX_INLINE_ROWS): upload "
                                f"larger data sets to /v1/datasets", "data.X")
        X = arrays.as_float(X, "data.X", job.dtype)
        if y.dtype.kind == "f":
            y = arrays.as_float(y, "data.y", job.dtype)
        check_data_fit(job.network, X, y, "data.y", job.dtype)
        return X.shape[0], X.shape[1], (X, y)
    meta = store.dataset(tenant, job.dataset_id)
    if meta is None:
        raise ApiError(422, f"dataset_id: no dataset {job.dataset_id!r}; upload one to "
                            f"/v1/datasets first", "dataset_id")
    y = store.dataset_targets(job.dataset_id)
    if y is None:  # deleted since its meta was read
        raise ApiError(422, f"dataset_id: no dataset {job.dataset_id!r}; upload one to "
                            f"/v1/datasets first", "dataset_id")
    # The input width comes from the data, so only the targets can fail to fit: check them
    # against a one-column stand-in for X instead of loading X.
    check_data_fit(job.network, np.zeros((len(y), 1), np.float32), y, "dataset_id", job.dtype)
    return meta["n_samples"], meta["n_features"], None


def new_job_meta(settings: Settings, tenant: str, job: JobIn, n_samples: int,
                 n_inputs: int) -> dict:
    job_id = new_id("job")
    return {
        "id": job_id, "tenant": tenant, "status": JobStatus.QUEUED.value,
        "network": job.network.model_dump(mode="json", exclude_unset=True),
        "training": job.training.model_dump(mode="json", exclude_unset=True),
        "dataset_id": job.dataset_id, "device": job.device, "dtype": job.dtype,
        "seed": job.seed, "timeout_s": job.timeout_s or settings.job_timeout_s,
        "n_samples": n_samples, "n_inputs": n_inputs, "epochs": job.training.epochs,
        "epoch": 0, "created_at": time.time(), "started_at": None, "finished_at": None,
        "attempt": 1, "rq_id": queues.rq_job_id(job_id, 1), "restarts": 0,
        "metrics": None, "error": None, "model_id": None, "cancel_requested": False,
    }


def submit(store: Store, settings: Settings, tenant: str, job: JobIn) -> dict:
    """Validate, store and enqueue; returns the job meta. Raises ApiError (4xx) when unfit."""
    check_spec_limits(settings, job)
    n_samples, n_inputs, inline = resolve_data(store, settings, tenant, job)
    n_params = parameter_count(job.network, n_inputs)
    if n_params > settings.max_parameters:
        raise ApiError(422, f"network: {n_params} parameters for {n_inputs} inputs; at most "
                            f"{settings.max_parameters} (BACKPROP_MAX_PARAMETERS)", "network")
    check_training_budget(settings, job, n_samples, n_inputs)
    meta = new_job_meta(settings, tenant, job, n_samples, n_inputs)
    # One transaction: a job is never stored without its queue entry, nor queued unstored.
    with store.r.pipeline(transaction=True) as pipe:
        pipe.multi()  # RQ's enqueue expects the transaction already open
        store.put_job(meta, inline, pipe)
        queues.enqueue_training(store.r, settings, meta["id"], job.device, 1, meta["timeout_s"],
                                pipeline=pipe)
        pipe.execute()
    return meta
