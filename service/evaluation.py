"""Scoring a model on rows with known targets: POST /v1/models/{id}/evaluate.

The rows come as JSON records or a CSV (the target column(s) included), or as a stored dataset;
each becomes the model's (numeric, codes) blocks and the true targets, and the model's outputs
come from service.serving.predict.predict_outputs (the one predict function; nothing else of serving
is used), so an evaluation scores exactly what /predict answers. The scores are engine.scores'.
"""

from __future__ import annotations

import numpy as np

from core.store import Store
from engine import scores
from engine.preparation import ClassTarget, MISSING, recode
from service import arrays
from service.cells import category_text, number
from service.errors import ApiError, invalid
from service.model_cache import LoadedModel
from service.serving.predict import Budget, predict_outputs
from service.table_inputs import csv_table, records_blocks, table_blocks

BODY_FIELDS = ("records", "dataset_id")


def target_names(loaded: LoadedModel) -> list[str]:
    """The column(s) holding the truth, as the model was trained on them."""
    target = loaded.preparation.target if loaded.preparation is not None else None
    if target is None:
        raise ApiError(422, "body: this model was trained without preprocessing, so it names "
                            "no target column; evaluate it on a dataset: {\"dataset_id\": ...}",
                       "body")
    return [target.name] if isinstance(target, ClassTarget) else list(target.names)


def class_labels(loaded: LoadedModel) -> list:
    target = loaded.preparation.target if loaded.preparation is not None else None
    if isinstance(target, ClassTarget):
        return list(target.classes)
    return list(range(loaded.meta.n_outputs))


def truth_of(values: list, loaded: LoadedModel, field: str) -> np.ndarray:
    """Raw target values (one per row; a list per row for several targets) -> class indices
    (n,) int64 for a classifier, else (n,) or (n, k) float64 in the target's units."""
    if loaded.meta.task == "classification":
        position = {category_text(c): i for i, c in enumerate(class_labels(loaded))}
        indices = np.empty(len(values), dtype=np.int64)
        for i, value in enumerate(values):
            text = category_text(value)
            if text is None:
                raise invalid(f"{field}[{i}]", "has no target value; leave out rows without one")
            if text not in position:
                raise invalid(f"{field}[{i}]", f"{value!r} is not a class of this model; its "
                                               f"classes are {list(position)}")
            indices[i] = position[text]
        return indices
    rows = [v if isinstance(v, list) else [v] for v in values]
    y = np.array([[number(v, f"{field}[{i}]") for v in row] for i, row in enumerate(rows)],
                 dtype=np.float64)
    missing = np.flatnonzero(np.isnan(y).any(axis=1))
    if len(missing):
        raise invalid(f"{field}[{missing[0]}]", "has no target value; leave out rows without one")
    return y[:, 0] if y.shape[1] == 1 else y


def records_rows(payload: dict, loaded: LoadedModel, budget: Budget):
    """{"records": [{column: value, target: value}, ...]} -> (numeric, codes, truth)."""
    names = target_names(loaded)
    records = payload["records"]
    if isinstance(records, list):  # sized as predict sizes them, before a cell is read
        budget.check_cells(len(records), len(loaded.preparation.columns), "records")
    numeric, codes = records_blocks(records, loaded.preparation, budget.max_rows, "records")
    for name in names:
        if not any(name in record for record in records):
            raise invalid("records", f"no record holds the target column {name!r}; include "
                                     f"it in every record")
    values = [r.get(names[0]) if len(names) == 1 else [r.get(n) for n in names]
              for r in records]
    return numeric, codes, truth_of(values, loaded, f"records[].{names[0]}")


def csv_rows(body: bytes, loaded: LoadedModel, budget: Budget):
    """A CSV with a header row, the target column(s) included -> (numeric, codes, truth)."""
    names = target_names(loaded)
    table = csv_table(body, loaded.preparation, budget.max_rows)
    absent = [n for n in names if n not in table.column_names]
    if absent:
        raise invalid("body", f"the CSV has no target column {absent[0]!r}; add it (evaluate "
                              f"compares the predictions with it)")
    budget.check_cells(table.num_rows, len(loaded.preparation.columns), "body")
    numeric, codes = table_blocks(table, loaded.preparation)
    columns = [table[n].to_pylist() for n in names]
    values = columns[0] if len(names) == 1 else [list(row) for row in zip(*columns)]
    return numeric, codes, truth_of(values, loaded, names[0])


def dataset_rows(store: Store, tenant: str, dataset_id, loaded: LoadedModel):
    """A stored dataset of the tenant -> (numeric, codes, truth), its columns matched to the
    model's by name (a model without preparation takes its numeric block as it is)."""
    if not isinstance(dataset_id, str):
        raise invalid("dataset_id", "must be a dataset id such as \"ds_...\"")
    dataset = store.dataset(tenant, dataset_id)
    arrays_ = store.dataset_arrays(dataset_id) if dataset is not None else None
    if arrays_ is None:
        raise invalid("dataset_id", f"no dataset {dataset_id!r}; upload one to /v1/datasets")
    schema = dataset.table_schema
    numeric, codes, y = arrays_
    prep = loaded.preparation
    if schema.target.kind == "categorical":
        y = [schema.target.classes[i] for i in y.tolist()]
    else:
        y = y.tolist()
    if prep is None:
        return numeric, None, truth_of(y, loaded, "dataset_id")
    slots = {kind: {c.name: i for i, c in enumerate(schema.of_kind(kind))}
             for kind in ("numeric", "categorical")}
    absent = [c.name for c in prep.columns if c.name not in slots[c.kind]]
    if absent:
        raise invalid("dataset_id", f"the dataset lacks the model's column(s) {absent} (as "
                                    f"{', '.join(c.kind for c in prep.columns if c.name in absent)}"
                                    f"); evaluate on a table with the columns it was trained on")
    block = numeric[:, [slots["numeric"][c.name] for c in prep.numeric]]
    info = schema.of_kind("categorical")
    recoded = np.full((len(block), len(prep.categorical)), MISSING, dtype=np.int64)
    for j, column in enumerate(prep.categorical):
        slot = slots["categorical"][column.name]
        recoded[:, j] = recode(codes[:, slot], info[slot].categories, column)
    return block, recoded, truth_of(y, loaded, "dataset_id")


def outputs_of(loaded: LoadedModel, numeric: np.ndarray, codes, budget: Budget,
               field: str) -> np.ndarray:
    """The model's outputs, from predict_outputs, a request's worth of rows at a time (a
    dataset may hold more rows than one predict takes)."""
    step = max(1, budget.max_rows)
    parts = [predict_outputs(loaded, numeric[i:i + step], budget, field,
                             None if codes is None else codes[i:i + step]).outputs
             for i in range(0, len(numeric), step)]
    return np.concatenate(parts).astype(np.float64)


def report(loaded: LoadedModel, outputs: np.ndarray, truth: np.ndarray) -> dict:
    """{n_rows, metrics, confusion_matrix} (confusion_matrix null for a regressor)."""
    if loaded.meta.task == "classification":
        found = scores.classification_report(truth, outputs, class_labels(loaded))
    else:
        found = scores.regression_report(truth, outputs.reshape(truth.shape))
    return {"n_rows": len(truth), **found}


def evaluate(loaded: LoadedModel, store: Store, tenant: str, body: bytes, media: str,
             budget: Budget) -> dict:
    """The evaluation of a request body of media type `media` (JSON or CSV)."""
    if loaded.meta.task == "multilabel":
        raise ApiError(422, "model: evaluate scores classifiers (one class per row) and "
                            "regressors; this model answers several labels per row", "model")
    if media == "text/csv":
        if loaded.preparation is None:
            raise ApiError(415, "body: CSV is read for models trained with preprocessing; send "
                                "{\"dataset_id\": ...}", "body")
        numeric, codes, truth = csv_rows(body, loaded, budget)
        field = "body"
    else:
        payload = arrays.parse_json(body)
        if not isinstance(payload, dict) or len(set(payload) & set(BODY_FIELDS)) != 1:
            raise ApiError(422, "body: send one of {\"records\": [{column: value, ...}]} (the "
                                "target column included) or {\"dataset_id\": ...}", "body")
        unknown = sorted(set(payload) - set(BODY_FIELDS))
        if unknown:
            raise invalid(unknown[0], "not a field of this body; send records or dataset_id")
        if "records" in payload:
            if loaded.preparation is None:
                raise ApiError(422, "records: this model was trained without preprocessing; "
                                    "evaluate it on a dataset: {\"dataset_id\": ...}", "records")
            numeric, codes, truth = records_rows(payload, loaded, budget)
            field = "records"
        else:
            numeric, codes, truth = dataset_rows(store, tenant, payload["dataset_id"], loaded)
            field = "dataset_id"
    return report(loaded, outputs_of(loaded, numeric, codes, budget, field), truth)
