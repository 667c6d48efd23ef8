"""Memory budgets checked when a job is submitted: what its worker will hold while training,
worked out from the network, the batch and the data alone, against a setting. The parameter
limit does not bound it: a 1-65536-1 network has 196K parameters, yet full-batch training over
2048 rows held 1.2 GB (every layer keeps a batch-by-width activation and delta)."""

from __future__ import annotations

from engine import ACTIVATIONS
from engine.propagation import TRANSPOSED_GEMM_ROWS
from service.errors import ApiError
from service.schemas import JobIn
from worker.settings import Settings

OPTIMIZER_SLOTS = {"gd": 0, "sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}
"""Buffers of parameter size each optimizer keeps (velocity; first and second moments)."""
ITEMSIZE = {"float32": 4, "float64": 8}


def training_bytes(widths: list[int], activations: list[str], batch_rows: int,
                   optimizer: str, itemsize: int) -> int:
    """Bytes the engine holds to train a network of `widths` (inputs first, then each layer's
    units) on batches of `batch_rows` (engine.propagation.Workspace): the parameters, their
    gradients, the optimizer's buffers and one saved copy (checkpoint, best weights); per
    batch row, each layer's activation and delta, the gathered input and target rows, and a
    row of the widest layer for small batches' transposed GEMM and for relu's zeros."""
    params = sum(w_in * w_out + w_out for w_in, w_out in zip(widths, widths[1:]))
    widest = max(widths[1:])
    scratch = (widest * (batch_rows <= TRANSPOSED_GEMM_ROWS)
               + widest * any(ACTIVATIONS[a].uses_zeros for a in activations))
    per_row = 2 * sum(widths[1:]) + widths[0] + widths[-1] + scratch
    slots = OPTIMIZER_SLOTS.get(optimizer, max(OPTIMIZER_SLOTS.values()))
    return itemsize * (params * (3 + slots) + batch_rows * per_row)


def check_training_budget(settings: Settings, job: JobIn, n_samples: int, n_inputs: int) -> None:
    """422 when training `job` over n_samples rows of n_inputs features would hold more than
    BACKPROP_MAX_TRAINING_BYTES in its worker, naming what to change."""
    itemsize = ITEMSIZE[job.dtype]
    widths = [n_inputs] + [layer.units for layer in job.network.layers]
    acts = [layer.activation for layer in job.network.layers]
    training = job.training
    train_rows = max(1, n_samples - round(n_samples * training.validation_split))
    batch = train_rows if training.full_batch else min(training.batch_size, train_rows)
    model = training_bytes(widths, acts, batch, training.optimizer, itemsize)
    per_row = -(-(model - training_bytes(widths, acts, 0, training.optimizer, itemsize))
                // batch)
    data = n_samples * (n_inputs * itemsize + widths[-1] * 8)  # X, and targets at most 8 B
    total, limit = model + data, settings.max_training_bytes
    if total <= limit:
        return
    if batch * per_row <= total / 2:
        field, fix = "network", "use narrower or fewer layers, or less data"
    elif training.full_batch:
        field = "training.optimizer" if training.optimizer == "gd" else "training.batch_size"
        fix = (f"train in mini-batches (optimizer sgd, momentum or adam with a "
               f"training.batch_size such as 256): each batch row takes {per_row} bytes")
    else:
        field, fix = "training.batch_size", f"use a smaller batch_size: each row takes {per_row} bytes"
    raise ApiError(422, f"{field}: training this job would take about {_mb(total)} in its "
                        f"worker ({_mb(data)} of data, {_mb(model)} for the network over "
                        f"batches of {batch} rows); at most {_mb(limit)} "
                        f"(BACKPROP_MAX_TRAINING_BYTES): {fix}", field)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"
