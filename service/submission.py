"""Checking a job before it is queued: limits, data fit, and the job record the worker reads."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core import fairness, queues, quota
from core.dataset_schema import DatasetSchema
from core.records import JobRecord
from core.settings import Settings, env_name
from core.store import Store
from core.training_data import DataMismatch, check_job_data, checked_arrays
import engine
from service import arrays
from service.budgets import check_training_budget
from service.bodies import parsed
from service.errors import ApiError
from service.job_defaults import check_training_options, resolved
from service.schemas import JobIn
from service.table_builder import Table, TableOptions
from service.tables import table_from_arrays
from service.upload_limits import DatasetLimits


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
                            f"{settings.max_layers} ({env_name('max_layers')})", "network.layers")
    for i, layer in enumerate(spec.layers):
        if layer.units > settings.max_units:
            raise ApiError(422, f"network.layers[{i}].units: {layer.units} units; at most "
                                f"{settings.max_units} ({env_name('max_units')})",
                           f"network.layers[{i}].units")
    if training.epochs > settings.max_epochs:
        raise ApiError(422, f"training.epochs: {training.epochs}; at most {settings.max_epochs} "
                            f"({env_name('max_epochs')})", "training.epochs")
    if training.batch_size is not None and training.batch_size > settings.max_batch_size:
        raise ApiError(422, f"training.batch_size: {training.batch_size}; at most "
                            f"{settings.max_batch_size} ({env_name('max_batch_size')})",
                       "training.batch_size")
    if job.timeout_s is not None and job.timeout_s > settings.job_timeout_s:
        raise ApiError(422, f"timeout_s: {job.timeout_s}; at most {settings.job_timeout_s} "
                            f"({env_name('job_timeout_s')})", "timeout_s")


def check_data_fit(spec: engine.NetworkSpec, X: np.ndarray, y: np.ndarray, field: str,
                   dtype: str) -> None:
    try:
        checked_arrays(spec, X, y, dtype)
    except ValueError as exc:
        raise ApiError(422, f"{field}: {exc}", field) from None


@dataclass(frozen=True)
class JobRequest:
    """A job body decoded: the spec (its `data` emptied) and its inline data as a table, or
    None for a job on an uploaded dataset (`job.dataset_id`)."""

    job: JobIn
    inline: Table | None


def parse_job(body: bytes, settings: Settings) -> JobRequest:
    """POST /v1/jobs's body read as JobIn, its inline data checked and turned into arrays here,
    where the body is decoded (arrays.decode_json_body: a thread, or a process for a big body),
    so that its lists go no further."""
    job = parsed(JobIn, body)
    if (job.dataset_id is None) == (job.data is None):
        raise ApiError(422, "give exactly one of dataset_id (an uploaded dataset) or data "
                            "({\"X\", \"y\"} inline)", "dataset_id")
    if job.data is None:
        return JobRequest(job, None)
    X = arrays.matrix(job.data.X, "data.X")
    y = arrays.vector_or_matrix(job.data.y, "data.y")
    arrays.rows_match(X, y, "data.X", "data.y")
    if X.shape[0] > settings.max_inline_rows:
        raise ApiError(413, f"data.X: {X.shape[0]} inline rows; at most "
                            f"{settings.max_inline_rows} ({env_name('max_inline_rows')}): upload "
                            f"larger data sets to /v1/datasets", "data.X")
    # Inline data are bounded by BACKPROP_MAX_INLINE_ROWS above; the rest of the dataset
    # limits (bytes, categories) hold for them as for an upload.
    table = table_from_arrays(X, y, TableOptions(dtype=job.dtype,
                                                 limits=DatasetLimits.of(settings)),
                              "data.X", "data.y")
    return JobRequest(job.model_copy(update={"data": None}), table)


def data_schema(store: Store, tenant: str, request: JobRequest) -> tuple[DatasetSchema, int]:
    """(the schema, the row count) of the job's inline data or dataset."""
    if request.inline is not None:
        return request.inline.schema, request.inline.n_rows
    dataset = store.dataset(tenant, request.job.dataset_id)
    if dataset is None:
        raise ApiError(422, f"dataset_id: no dataset {request.job.dataset_id!r}; upload one to "
                            f"/v1/datasets first", "dataset_id")
    return dataset.table_schema, dataset.n_samples


def resolve_data(store: Store, tenant: str, request: JobRequest, schema: DatasetSchema,
                 n_samples: int):
    """(n_samples, n_inputs, inline arrays or None), after
    checking that the data fit the network, the preprocessing and the validation split.
    n_inputs is the widest input the preprocessing can make (the fitted one can be smaller)."""
    job, table, inline = request.job, request.inline, None
    if table is not None:
        inline = (table.numeric, table.y)
        y, field = table.y, "data.y"
    else:
        y, field = None, "dataset_id"
    try:
        features = check_job_data(schema, job.network, job.preprocessing, job.dtype)
    except DataMismatch as exc:
        raise ApiError(422, f"{exc.field}: {exc}", exc.field) from None
    check_training_options(job, schema, n_samples)
    mapped = (job.preprocessing.mode == "auto" and job.network.loss == "cross_entropy"
              and len(schema.target.names) == 1)
    if not mapped:  # classes mapped to units were checked by count; anything else by value
        y = y if y is not None else store.dataset_targets(job.dataset_id)
        if y is None:  # deleted since its meta was read
            raise ApiError(422, f"dataset_id: no dataset {job.dataset_id!r}; upload one to "
                                f"/v1/datasets first", "dataset_id")
        # The input width comes from the data, so only the targets can fail to fit: check
        # them against a one-column stand-in for X instead of loading X.
        check_data_fit(job.network, np.zeros((len(y), 1), np.float32), y, field, job.dtype)
    return n_samples, features.width, inline


def job_record(settings: Settings, tenant: str, job: JobIn, n_samples: int, n_inputs: int,
               data_bytes: int, reserved_bytes: int = 0) -> JobRecord:
    return JobRecord(
        tenant=tenant, network=job.network.model_dump(mode="json"),
        training=job.training.model_dump(mode="json"),
        dataset_id=job.dataset_id, preprocessing=job.preprocessing, device=job.device,
        dtype=job.dtype, seed=job.seed,
        timeout_s=job.timeout_s or settings.job_timeout_s, n_samples=n_samples,
        n_inputs=n_inputs, data_bytes=data_bytes, reserved_bytes=reserved_bytes,
        epochs=job.training.epochs)


def check_worker(store: Store, settings: Settings, device: str) -> None:
    """503 when no live worker serves the queue the job would go to: it would wait forever."""
    name = queues.queue_name(settings, device)
    if queues.workers_serving(store.r, settings, (name,))[name]:
        return
    start = (f"`backprop worker --queues {name}` on a machine with CuPy (pip install .[gpu]), "
             f"or submit with \"device\": \"cpu\"" if name == settings.gpu_queue else
             "`backprop worker` (or `backprop up --workers N`)")
    raise ApiError(503, f"device: no worker serves queue {name!r}, so a {device!r} job would "
                        f"wait forever; start one with {start}", "device",
                   headers={"Retry-After": "30"})


def submit(store: Store, settings: Settings, tenant: str, request: JobRequest) -> JobRecord:
    """Validate, store and queue (or backlog); returns the job record. Raises ApiError (4xx,
    or 503 when no worker serves its queue) when it cannot run."""
    schema, n_samples = data_schema(store, tenant, request)
    job = resolved(request.job, schema, n_samples)
    request = JobRequest(job, request.inline)
    check_spec_limits(settings, job)
    n_samples, n_inputs, inline = resolve_data(store, tenant, request, schema, n_samples)
    n_params = parameter_count(job.network, n_inputs)
    if n_params > settings.max_parameters:
        raise ApiError(422, f"network: {n_params} parameters for {n_inputs} inputs; at most "
                            f"{settings.max_parameters} ({env_name('max_parameters')})", "network")
    check_training_budget(settings, job, n_samples, n_inputs)
    check_worker(store, settings, job.device)
    blobs = Store.inline_blobs(*inline) if inline is not None else None
    data_bytes = sum(map(len, blobs.values())) if blobs else 0
    # What it will write while it trains (checkpoint, model, history), reserved now: jobs
    # submitted together cannot each count on the same free bytes.
    reserved = quota.job_reservation(n_params, np.dtype(job.dtype).itemsize,
                                     job.training.epochs)
    try:
        return fairness.submit(store, settings, job_record(settings, tenant, job, n_samples,
                                                           n_inputs, data_bytes, reserved),
                               blobs)
    except quota.QuotaExceeded as exc:
        raise ApiError(exc.status, exc.message, exc.field) from None
    except fairness.BacklogFull as exc:
        raise ApiError(429, str(exc), None, headers={"Retry-After": "30"}) from None
