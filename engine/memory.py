"""How many bytes the engine's work takes, before doing it: pure functions of the shapes.

The API sizes a predict or refuses a training job with these; Network.predict and the
validation pass chunk their rows with chunk_rows so that their buffers stay within
WORKSPACE_BYTES whatever the network's widths.

Shapes, for layer widths [n_0 = inputs, n_1, ..., n_L] and itemsize s of the dtype:
    x^(l), z^(L), delta^(l)    (rows, n_l) each
    W^(l), b^(l)               (n_l, n_{l-1}) and (n_l,): P = sum n_l (n_{l-1} + 1) numbers
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .optimizers import OPTIMIZERS

WORKSPACE_BYTES = 32 << 20
"""Budget of a predict's or a validation pass's buffers per chunk of rows (32 MiB).

Measured on this project's shared 2-core machine (784-512-256-10 float32, 60000 rows through
Network.forward_chunks, medians of 9 interleaved rounds, load average 5): chunks of 8 MiB
(1157 rows) ran at 0.70x the speed of 32 MiB ones (4629 rows), 128 MiB at 1.04x; the best
rounds, 50k, 82k and 91k rows/s. Beyond a few thousand rows a chunk's GEMMs run near full
speed, so a larger budget mostly costs memory. 32 MiB keeps the 4096-row chunks this network
had before, and bounds a 1-65536-1 network's 4096-row predict to 32 MiB, where one 4096-row
chunk grew the API by 1 GB."""

SMALL_ROWS = 16
"""Inputs of at most this many rows (an API's one-row predicts) reuse per-thread buffers and
skip the chunking (fewer where 16 rows would not fit WORKSPACE_BYTES)."""

TRANSPOSED_GEMM_ROWS = 128
"""CPU batches of at most this many rows compute z^(l)T = W x^T in a scratch buffer
(propagation.affine), one more (rows, max n_l) array."""


def itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def param_count(widths: list[int]) -> int:
    """P = sum over layers of n_l (n_{l-1} + 1): every W^(l) and b^(l)."""
    return sum(o * (i + 1) for i, o in zip(widths[:-1], widths[1:]))


def forward_row_bytes(widths: list[int], dtype: str) -> int:
    """Workspace bytes per row of a forward pass: x^(l) for l = 1..L, z^(L), and two
    (1, max n_l) scratch rows (relu's zero array; the CPU's transposed z). An upper bound:
    the scratch rows exist only for relu networks and small CPU chunks."""
    units = widths[1:]
    return itemsize(dtype) * (sum(units) + units[-1] + 2 * max(units))


def forward_workspace_bytes(widths: list[int], rows: int, dtype: str = "float32") -> int:
    """Bytes of the buffers a forward pass of `rows` rows keeps (propagation.Workspace with
    backward=False), at most: rows * forward_row_bytes."""
    return rows * forward_row_bytes(widths, dtype)


def chunk_rows(widths: list[int], dtype: str = "float32", extra_row_bytes: int = 0,
               budget: int = WORKSPACE_BYTES) -> int:
    """Rows per chunk so that one chunk's forward workspace, plus extra_row_bytes per row
    (rows gathered for it: inputs, targets), fits `budget`; at least 1 (one row of a network
    wider than the budget still runs: refuse such work before, with predict_bytes)."""
    return max(1, budget // (forward_row_bytes(widths, dtype) + extra_row_bytes))


def small_rows(widths: list[int], dtype: str = "float32") -> int:
    """Rows of the per-thread buffers for small predicts: SMALL_ROWS, or fewer to fit the
    budget."""
    return min(SMALL_ROWS, chunk_rows(widths, dtype))


def predict_bytes(widths: list[int], rows: int, dtype: str = "float32") -> int:
    """Bytes Network.predict allocates for `rows` rows, at most: the input converted to
    `dtype` (rows, n_0) (no copy when it already is), the output (rows, n_L) and one chunk's
    workspace (at most WORKSPACE_BYTES, or one row where a row alone is larger; small_rows
    rows for a small predict, whose buffers its thread keeps for the next one). NumPy's
    buffers only: Python's own objects add a few KB."""
    s = itemsize(dtype)
    small = small_rows(widths, dtype)
    chunk = small if rows <= small else min(rows, chunk_rows(widths, dtype))
    return rows * (widths[0] + widths[-1]) * s + forward_workspace_bytes(widths, chunk, dtype)


def optimizer_state_buffers(optimizer: str) -> int:
    """Parameter-sized buffers the optimizer keeps between steps (velocity; Adam's moments)."""
    return len(OPTIMIZERS[optimizer].state_slots)


def optimizer_buffers(optimizer: str) -> int:
    """Parameter-sized buffers the optimizer allocates: its state and, with any, one scratch."""
    state = optimizer_state_buffers(optimizer)
    return state + 1 if state else 0


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of what fit holds at its peak, by part (training_bytes). total sums them."""

    data: int            # X converted to the dtype (n, n_0) and the targets (n, n_L) or (n,)
    indices: int         # the split, the epoch's shuffled order (and its device copy): int64
    params: int          # W^(l), b^(l)
    grads: int           # dL/dW^(l), dL/db^(l)
    optimizer: int       # optimizer_buffers(optimizer) parameter-sized buffers
    kept_weights: int    # early stopping's best weights; on a GPU, the epoch's start (see
                         # training.fit: a diverged epoch is replayed from it)
    batch: int           # the gathered batch (m, n_0) and its targets
    activations: int     # x^(l), z^(L) and scratch for m rows
    deltas: int          # delta^(l) for m rows and the ones vector of dL/db
    validation: int      # one validation chunk: gathered rows, targets, forward workspace

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


def target_row_bytes(n_outputs: int, loss: str, dtype: str) -> int:
    """Bytes per row of targets as fit holds them: an int64 label for cross_entropy, else
    n_L numbers of the dtype."""
    return 8 if loss == "cross_entropy" else n_outputs * itemsize(dtype)


def training_bytes(widths: list[int], rows: int, batch: int, dtype: str = "float32",
                   optimizer: str = "sgd", loss: str = "squared_error",
                   validation_rows: int = 0, restore_best: bool = False,
                   device: str = "cpu") -> TrainingMemory:
    """What fit allocates to train on `rows` rows (validation rows included) in batches of
    `batch` rows (the training rows, for full-batch gd), by part; see TrainingMemory.

    The caller's own copy of the data is not counted. Temporaries of one batch's outputs
    (m, n_L), such as a loss's intermediate arrays, are not listed: they are small next to
    the parts above for any network with a hidden layer."""
    s = itemsize(dtype)
    units = widths[1:]
    t_row = target_row_bytes(units[-1], loss, dtype)
    p = param_count(widths) * s
    train_rows = rows - validation_rows
    val_chunk = 0
    if validation_rows:
        gathered = widths[0] * s + t_row
        chunk = min(validation_rows, chunk_rows(widths, dtype, gathered))
        val_chunk = chunk * (gathered + forward_row_bytes(widths, dtype))
    kept = p if restore_best else 0
    if device == "gpu":
        kept += p * (1 + optimizer_state_buffers(optimizer))
    return TrainingMemory(
        data=rows * (widths[0] * s + t_row),
        indices=8 * (rows + 2 * train_rows),
        params=p, grads=p, optimizer=optimizer_buffers(optimizer) * p, kept_weights=kept,
        batch=batch * (widths[0] * s + t_row),
        activations=batch * forward_row_bytes(widths, dtype),
        deltas=batch * (sum(units) + 1) * s,
        validation=val_chunk)
