"""Memory budgets checked when a job is submitted: what its worker will hold while training,
worked out from the network, the batch and the data alone, against a setting. The parameter
limit does not bound it: a 1-65536-1 network has 196K parameters, yet full-batch training over
2048 rows held 1.2 GB (every layer keeps a batch-by-width activation and delta)."""

from __future__ import annotations

from core.settings import Settings, env_name
from engine import memory
from service.errors import ApiError
from service.schemas import JobIn


def check_training_budget(settings: Settings, job: JobIn, n_samples: int, n_inputs: int) -> None:
    """422 when training `job` over n_samples rows of n_inputs features would hold more than
    BACKPROP_MAX_TRAINING_BYTES in its worker, naming what to change."""
    widths = [n_inputs] + [layer.units for layer in job.network.layers]
    training = job.training
    validation_rows = round(n_samples * training.validation_split)
    train_rows = max(1, n_samples - validation_rows)
    batch = train_rows if training.full_batch else min(training.batch_size, train_rows)
    restore_best = bool(training.early_stopping and training.early_stopping.restore_best)

    def needed(rows_per_batch: int) -> memory.TrainingMemory:
        return memory.training_bytes(widths, n_samples, rows_per_batch, job.dtype,
                                     training.optimizer, job.network.loss, validation_rows,
                                     restore_best, "gpu" if job.device == "gpu" else "cpu")

    parts = needed(batch)
    per_row = -(-(parts.total - needed(0).total) // batch)
    data, model = parts.data, parts.total - parts.data
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
                        f"({env_name('max_training_bytes')}): {fix}", field)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"
