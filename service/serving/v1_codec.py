"""/v1 predict's codecs: a request body per media type -> rows, and a prediction -> the answer
(JSON, .npy, or a scored CSV)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import orjson

from core.codec import array_to_bytes
from engine.preparation import Preparation
from service import arrays, json_numbers
from service.errors import ApiError, invalid
from service.model_cache import LoadedModel
from service.scored_csv import scored_csv
from service.serving.predict import Budget, Prediction, check_json_size
from service.table_inputs import csv_table, records_blocks, table_blocks

NPY, CSV, JSON = "application/x-npy", "text/csv", "application/json"


@dataclass(frozen=True)
class Rows:
    """A predict body decoded: numbers (n, n_inputs); or for a model with a preparation its
    raw values, as records or a CSV table (a CSV body's table is answered as a scored CSV),
    until built() reads them into its raw numeric columns X (n, p) and category codes (n, q).
    """

    X: np.ndarray | None = None
    codes: np.ndarray | None = None
    table: Any = None
    records: list | None = None

    @property
    def count(self) -> int:
        """Rows, as decoded."""
        if self.records is not None:
            return len(self.records)
        return len(self.X) if self.X is not None else self.table.num_rows

    @property
    def raw(self) -> bool:
        """Whether built() still has to read each value (records, a CSV table)."""
        return self.X is None

    def built(self, preparation: Preparation | None, budget: Budget) -> "Rows":
        """The rows with X (and codes) read, once their cells fit the budget."""
        if not self.raw:
            return self
        budget.check_cells(self.count, len(preparation.columns), "inputs")
        if self.records is not None:
            return Rows(*records_blocks(self.records, preparation, budget.max_rows))
        return Rows(*table_blocks(self.table, preparation), table=self.table)


def json_rows(body: bytes, preparation: Preparation | None, budget: Budget,
              dtype: str) -> Rows:
    """`{"inputs": [[...], ...]}`, or `{"inputs": [{column: value}, ...]}` (records) for a
    model with a preparation. Numbers are converted once, straight to the model's `dtype`;
    predict_outputs checks them."""
    check_json_size(body, budget, "inputs")
    numbers = json_numbers.number_rows(body, "inputs")
    if numbers is not None:
        return Rows(arrays.number_rows(numbers, "inputs", arrays.FLOAT_DTYPES[dtype]))
    payload = arrays.parse_json(body)
    if not isinstance(payload, dict):
        raise invalid("body", "must be a JSON object {\"inputs\": [[...], ...]}")
    unknown = sorted(set(payload) - {"inputs"})
    if unknown:
        raise invalid(unknown[0], "not a field of this body; send only "
                                  "{\"inputs\": [[...], ...]}")
    if "inputs" not in payload:
        raise invalid("inputs", "required (rows x n_inputs numbers)")
    inputs = payload["inputs"]
    if preparation is not None and isinstance(inputs, list) and inputs and \
            isinstance(inputs[0], dict):
        return Rows(records=inputs)
    return Rows(arrays.number_rows(inputs, "inputs", arrays.FLOAT_DTYPES[dtype]))


def rows_built(decode: "Decoder", body: bytes, preparation: Preparation | None,
               budget: Budget, dtype: str) -> Rows:
    """decode(...).built(...), for a decoder process: what it sends back is arrays (and a CSV
    body's table), not records' Python objects."""
    return decode(body, preparation, budget, dtype).built(preparation, budget)


def npy_rows(body: bytes, preparation: Preparation | None, budget: Budget, dtype: str) -> Rows:
    """A 2-D .npy array, rows x n_inputs."""
    return Rows(arrays.from_npy(body, "inputs"))


def csv_rows(body: bytes, preparation: Preparation | None, budget: Budget, dtype: str) -> Rows:
    """A CSV with a header row, for a model with a preparation (which names its columns)."""
    if preparation is None:
        raise invalid("body", "CSV is read for models trained with preprocessing; send JSON "
                              "{\"inputs\": [[...]]} or .npy to this model", 415)
    return Rows(table=csv_table(body, preparation, budget.max_rows))


Decoder = Callable[[bytes, "Preparation | None", Budget, str], Rows]
"""(body, the model's preparation, the predict budget, the model's dtype) -> rows."""
INPUT_CODECS: dict[str, Decoder] = {JSON: json_rows, NPY: npy_rows, CSV: csv_rows}
"""Request media type -> its rows (no Content-Type: JSON)."""


def input_codec(content_type: str) -> Decoder:
    """The codec of `application/json; charset=utf-8` and the like, or 415."""
    media = content_type.split(";")[0].strip().lower() or JSON
    codec = INPUT_CODECS.get(media)
    if codec is None:
        raise ApiError(415, f"body: Content-Type {media!r} is not read here; send one of "
                            f"{', '.join(INPUT_CODECS)}", "body")
    return codec


def rendered(model_id: str, rows: Rows, prediction: Prediction, accept: str,
             loaded: LoadedModel) -> tuple[str, bytes]:
    """(content type, body) of a predict answer: a CSV body's table with the predictions
    appended; the outputs as .npy when Accept asks for it; else JSON {model_id, outputs,
    labels?}."""
    answer = {"model_id": model_id, "outputs": prediction.outputs}
    if prediction.labels is not None:            # text classes as str (orjson writes numbers)
        labels = prediction.labels
        answer["labels"] = labels.tolist() if labels.dtype.kind in "US" else labels
    if rows.table is not None:
        return CSV, scored_csv(rows.table, loaded, answer)
    if NPY in accept:
        return NPY, array_to_bytes(prediction.outputs)
    return JSON, orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
