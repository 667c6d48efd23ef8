"""The one predict function, shared by /v1 predict and /v2 infer: (loaded model, input array)
-> outputs and labels, within the rows and memory limits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.settings import Settings, env_name
from engine import labels_from_outputs, memory
from engine.preparation import ClassTarget, ScaledTarget
from service import arrays
from service.errors import ApiError
from service.model_cache import LoadedModel

MB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """What one predict may take: rows, and bytes of memory (settings.predict_memory_bytes)."""

    max_rows: int
    max_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> "Budget":
        return cls(settings.max_predict_rows, settings.predict_memory_bytes)

    def refuse(self, field: str, what: str, need: int,
               fix: str = "send fewer rows per request") -> ApiError:
        return ApiError(413, f"{field}: {what} need(s) about {need / MB:.1f} MiB, more than "
                             f"{env_name('predict_memory_bytes')}={self.max_bytes} allows; {fix}",
                        field)

    def check_rows(self, rows: int, field: str) -> None:
        """413 for more rows than one predict may have."""
        if rows > self.max_rows:
            raise ApiError(413, f"{field}: {rows} rows; at most {self.max_rows} per request "
                                f"({env_name('max_predict_rows')})", field)

    def check_cells(self, rows: int, columns: int, field: str) -> None:
        """Before raw values (records, a CSV table, per-column tensors) become the blocks a
        preparation transforms: their rows, and the blocks' memory (CELL_BYTES for each of
        rows x the model's columns, whatever few values the body itself holds) within the
        budget. `rows` is what was decoded, never a count the body declares."""
        self.check_rows(rows, field)
        if rows * columns * CELL_BYTES > self.max_bytes:
            raise self.refuse(field, f"{rows} rows x {columns} columns (the model's, each "
                                     f"read as a number or a category code)",
                              rows * columns * CELL_BYTES, "send fewer rows per request")


CELL_BYTES = 8
"""Memory of one cell of the blocks a preparation transforms: a float64 value or an int64
category code, for every column of the model in every row, present in the body or not."""


JSON_NUMBER_BYTES = 40
"""Memory of one JSON number while parsed: a Python float (24 bytes) and its list slot (8),
then its float64 copy (8)."""


def check_json_size(body: bytes, budget: Budget, field: str) -> None:
    """Before parsing a JSON body: the numbers it can hold must fit the memory budget once
    parsed. Every number takes two bytes with its separator, so a body of up to the budget /
    20 bytes always fits; a larger one is bounded by its commas (at most one fewer than its
    numbers): counting them costs 0.3 ms per 370 kB."""
    if (len(body) // 2 + 1) * JSON_NUMBER_BYTES <= budget.max_bytes:
        return
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
    """int64 (rows,) or (rows, n_outputs) for multilabel, or the classes' own values (text,
    numbers) for a model whose preparation mapped them; None for regressors."""


def predict_outputs(loaded: LoadedModel, X: np.ndarray, budget: Budget, field: str,
                    codes: np.ndarray | None = None) -> Prediction:
    """Outputs (and labels for classifiers) of X: rows of numbers (rows, n_inputs), or for a
    model with a preparation its raw numeric columns and, from records or CSV, their category
    `codes`. `field` names the input in errors ("inputs" in /v1, "input 'input'" in /v2)."""
    meta, net, prep = loaded.meta, loaded.net, loaded.preparation
    if codes is None:                   # a matrix of numbers: the readers of records check theirs
        width = loaded.input_width
        if X.ndim != 2 or X.shape[1] != width or X.shape[0] == 0:
            raise ApiError(422, f"{field}: shape must be [rows, {width}] with rows >= 1: each "
                                f"row needs {width} values (the model's input width); got "
                                f"{list(X.shape)}", field)
        if prep is not None and not prep.all_numeric:
            raise ApiError(422, f"{field}: this model takes text columns "
                                f"{[c.name for c in prep.categorical]}; send records "
                                f"{{\"inputs\": [{{\"column\": value, ...}}]}} or a CSV body to "
                                f"/v1/models/{{id}}/predict", field)
    rows = X.shape[0]
    budget.check_rows(rows, field)
    one_row = memory.predict_bytes(net.widths, 1, meta.dtype)
    if one_row > budget.max_bytes:
        raise budget.refuse(field, "one row through this network (its buffers)", one_row,
                            "raise the setting, or train a narrower network")
    need = memory.predict_bytes(net.widths, rows, meta.dtype)
    if need > budget.max_bytes:
        raise budget.refuse(field, f"{rows} rows (input, outputs and the forward pass's "
                                   f"buffers)", need)
    if codes is None:                   # the one check of the numbers, in the pass of the cast
        X = arrays.finite_as(X, field, meta.dtype)
    if prep is not None:
        X = prep.transform(X, codes, meta.dtype)
    outputs = net.predict(X)            # in chunks of rows within memory.WORKSPACE_BYTES
    target = prep.target if prep is not None else None
    if isinstance(target, ScaledTarget):
        target.decode(outputs)
    labels = None
    if meta.task in ("classification", "multilabel"):
        labels = labels_from_outputs(net.spec, outputs)
        if isinstance(target, ClassTarget):
            labels = np.asarray(target.labels(labels))
    return Prediction(outputs, labels)
