"""Predict inputs for a model with a preparation, as users have them: JSON records with raw
values, a CSV file, or per-column tensors (the inference protocol). Each becomes the
(numeric, codes) blocks that engine.preparation transforms; rows answer in the same order.

What a value means is service.cells' to say, as at upload: a missing value (null, an absent
key, an empty cell, NA, NaN, ?) is imputed as in training; an unknown category encodes as all
zeros; an infinite number is refused naming the column; a date column takes ISO 8601 text (or
days since 1970-01-01), read into days for engine.preparation to derive its calendar features;
keys the model does not use (the target, ignored columns) are accepted and ignored.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from engine.preparation import MISSING, Preparation
from service.cells import (category_array, category_text, cell_value, date_array, date_days,
                           finite_numbers, number, number_array)
from service.errors import invalid
from service.tables import CSV_BLOCK_BYTES, NULL_VALUES, csv_problem


def records_blocks(records, preparation: Preparation, max_rows: int,
                   field: str = "inputs") -> tuple[np.ndarray, np.ndarray]:
    """[{column: raw value}, ...] -> (numbers (n, p) float64, codes (n, q) int64)."""
    if not isinstance(records, list) or not records:
        raise invalid(field, "must be a non-empty list of records {\"column\": value, ...}")
    if len(records) > max_rows:
        raise invalid(field, f"{len(records)} rows; at most {max_rows} per request "
                             f"(BACKPROP_MAX_PREDICT_ROWS)", 413)
    num_cols, cat_cols = preparation.numbers, preparation.categorical
    numeric = np.empty((len(records), len(num_cols)), dtype=np.float64)
    codes = np.empty((len(records), len(cat_cols)), dtype=np.int64)
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise invalid(f"{field}[{i}]", "must be an object {\"column\": value, ...}")
        for j, column in enumerate(num_cols):
            numeric[i, j] = cell_value(record.get(column.name), f"{field}[{i}].{column.name}",
                                       column.kind)
        for j, column in enumerate(cat_cols):
            text = category_text(record.get(column.name), f"{field}[{i}].{column.name}")
            codes[i, j] = MISSING if text is None else column.position(text)
    return numeric, codes


def csv_table(body: bytes, preparation: Preparation, max_rows: int) -> pa.Table:
    """A CSV body (header row) read with the model's columns as text, which service.cells
    turns into numbers or categories by the rules the upload followed; other columns as they
    come."""
    types = {c.name: pa.string() for c in preparation.columns}
    try:
        table = pacsv.read_csv(io.BytesIO(body), read_options=pacsv.ReadOptions(
            block_size=CSV_BLOCK_BYTES), parse_options=pacsv.ParseOptions(
            newlines_in_values=True), convert_options=pacsv.ConvertOptions(
            null_values=NULL_VALUES, strings_can_be_null=True, column_types=types))
    except pa.ArrowInvalid as exc:
        raise invalid("body", csv_problem(str(exc))) from None
    if table.num_rows == 0:
        raise invalid("body", "the CSV has no data rows")
    if table.num_rows > max_rows:
        raise invalid("body", f"{table.num_rows} rows; at most {max_rows} per request "
                              f"(BACKPROP_MAX_PREDICT_ROWS)", 413)
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise invalid("body", f"the column name(s) {repeated} appear twice; give each column "
                              f"its own name")
    return table


def table_blocks(table: pa.Table, preparation: Preparation) -> tuple[np.ndarray, np.ndarray]:
    """An arrow table's model columns -> (numbers, codes); an absent column is all missing."""
    n = table.num_rows
    numeric = np.full((n, len(preparation.numbers)), np.nan)
    codes = np.full((n, len(preparation.categorical)), MISSING, dtype=np.int64)
    present = set(table.column_names)
    for j, column in enumerate(preparation.numbers):
        if column.name in present:
            read = date_array if column.kind == "date" else number_array
            numeric[:, j] = read(table[column.name].combine_chunks(), column.name)
    for j, column in enumerate(preparation.categorical):
        if column.name in present:
            values = category_array(table[column.name].combine_chunks(), column.name)
            codes[:, j] = [MISSING if v is None else column.position(v)
                           for v in values.to_pylist()]
    return numeric, codes


def column_blocks(columns: dict[str, np.ndarray], preparation: Preparation
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One tensor per raw column (the inference protocol's inputs, shape (rows,) or (rows, 1):
    numbers for a numeric column, NaN for missing; strings for a text one, "" for missing;
    ISO 8601 strings or days since 1970 for a date) -> (numbers, codes). A column the request
    leaves out is missing in every row."""
    names = {c.name for c in preparation.columns}
    unknown = sorted(set(columns) - names)
    if unknown:
        raise invalid("inputs", f"{unknown} are not columns of this model; it takes one input "
                                f"per column: {[c.name for c in preparation.columns]}")
    shaped = {}
    for name, values in columns.items():
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise invalid(f"input {name!r}", f"shape must be [rows] or [rows, 1], got "
                                             f"{list(values.shape)}")
        shaped[name] = values
    rows = {len(v) for v in shaped.values()}
    if len(rows) != 1 or 0 in rows:
        raise invalid("inputs", f"every column needs the same number of rows (at least one); "
                                f"got {sorted(rows)}")
    [n] = rows
    numeric = np.full((n, len(preparation.numbers)), np.nan)
    codes = np.full((n, len(preparation.categorical)), MISSING, dtype=np.int64)
    for j, column in enumerate(preparation.numbers):
        if column.name in shaped:
            values = shaped[column.name]
            field = f"input {column.name!r}"
            if column.kind == "date":
                numeric[:, j] = [date_days(v.item() if isinstance(v, np.generic) else v, field)
                                 for v in values]
            elif values.dtype == object:
                numeric[:, j] = [number(v.decode() if isinstance(v, bytes) else v, field)
                                 for v in values]
            else:
                numeric[:, j] = finite_numbers(values.astype(np.float64), field)
    for j, column in enumerate(preparation.categorical):
        if column.name in shaped:
            texts = (category_text(v.item() if hasattr(v, "item") else v,
                                   f"input {column.name!r}")
                     for v in shaped[column.name])
            codes[:, j] = [MISSING if t is None else column.position(t) for t in texts]
    return numeric, codes
