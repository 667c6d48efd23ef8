"""The one predict function, shared by /v1 predict and /v2 infer: (loaded model, input array)
-> outputs and labels, within the rows and memory limits. Each protocol keeps only its codec
(request body -> array, prediction -> response body)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service import arrays
from service.errors import ApiError
from service.model_cache import LoadedModel, labels_from_outputs
from worker.settings import Settings

MB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """What one predict may take: rows, and bytes of memory (BACKPROP_PREDICT_MEMORY_BYTES)."""

    max_rows: int
    max_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> "Budget":
        return cls(settings.max_predict_rows, settings.predict_memory_bytes)

    def refuse(self, field: str, what: str, need: int,
               fix: str = "send fewer rows per request") -> ApiError:
        return ApiError(413, f"{field}: {what} need(s) about {need / MB:.1f} MiB, more than "
                             f"BACKPROP_PREDICT_MEMORY_BYTES={self.max_bytes} allows; {fix}",
                        field)


JSON_NUMBER_BYTES = 40
"""Memory of one JSON number while parsed: a Python float (24 bytes) and its list slot (8),
then its float64 copy (8)."""


def check_json_size(body: bytes, budget: Budget, field: str) -> None:
    """Before parsing a JSON body: the numbers it can hold (at most one more than its commas)
    must fit the memory budget once parsed."""
    numbers = body.count(b",") + 1
    if numbers * JSON_NUMBER_BYTES > budget.max_bytes:
        raise budget.refuse(field, f"parsing up to {numbers} JSON numbers",
                            numbers * JSON_NUMBER_BYTES, "send fewer rows per request, or "
                            "binary rows (an .npy body, or v2 binary tensors)")


@dataclass(frozen=True)
class Prediction:
    outputs: np.ndarray
    """(rows, n_outputs) in the model's dtype; probabilities for a softmax output."""
    labels: np.ndarray | None
    """int64 (rows,) or (rows, n_outputs) for multilabel; None for regressors."""


LIGHT_BODY_BYTES = 16 * 1024
LIGHT_MULTIPLY_ADDS = 8_000_000


def light(body: bytes, loaded: LoadedModel) -> bool:
    """Whether predicting from `body` is sure to be light work (well under a millisecond), fit
    for the event loop: a small body, and at most one row per n_inputs of its bytes (every
    value takes one byte or more) through the network's multiply-adds."""
    widths = loaded.net.widths
    rows = len(body) // widths[0] + 1
    return (len(body) <= LIGHT_BODY_BYTES and
            rows * sum(a * b for a, b in zip(widths, widths[1:])) <= LIGHT_MULTIPLY_ADDS)


def forward_bytes(widths: list[int], rows: int, itemsize: int) -> int:
    """Memory of a forward pass over `rows` rows: an activation per layer (stand-in for the
    engine's own estimate)."""
    return rows * sum(widths) * itemsize


def predict_outputs(loaded: LoadedModel, X: np.ndarray, budget: Budget, field: str
                    ) -> Prediction:
    """Outputs (and labels for classifiers) of X (rows, n_inputs) of finite numbers; `field`
    names the input in errors ("inputs" in /v1, "input 'input'" in /v2)."""
    meta, net = loaded.meta, loaded.net
    width = meta["n_inputs"]
    if X.ndim != 2 or X.shape[1] != width or X.shape[0] == 0:
        raise ApiError(422, f"{field}: shape must be [rows, {width}] with rows >= 1: each row "
                            f"needs {width} values (the model's input width); got "
                            f"{list(X.shape)}", field)
    rows = X.shape[0]
    if rows > budget.max_rows:
        raise ApiError(413, f"{field}: {rows} rows; at most {budget.max_rows} per request "
                            f"(BACKPROP_MAX_PREDICT_ROWS)", field)
    itemsize = np.dtype(meta["dtype"]).itemsize
    held = rows * (width + meta["n_outputs"]) * itemsize
    if held > budget.max_bytes:
        raise budget.refuse(field, f"{rows} rows of input and output", held)
    per_row = forward_bytes(net.widths, 1, itemsize)
    chunk = (budget.max_bytes - held) // per_row
    if chunk < 1:
        raise budget.refuse(field, "the forward pass of one row through this network",
                            held + per_row)
    X = arrays.as_float(arrays.finite(X, field), field, meta["dtype"])
    if rows <= chunk:
        outputs = net.predict(X)
    else:
        outputs = np.empty((rows, meta["n_outputs"]), dtype=meta["dtype"])
        for start in range(0, rows, chunk):
            outputs[start:start + chunk] = net.predict(X[start:start + chunk])
    labels = None
    if meta.get("task") in ("classification", "multilabel"):
        labels = labels_from_outputs(net.spec, outputs)
    return Prediction(outputs, labels)
