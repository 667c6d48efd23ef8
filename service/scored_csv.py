"""A CSV file scored by a model: the rows as they came, with the prediction appended.

Text that a spreadsheet would run as a formula (a cell or header starting with `=`, `+`, `-`,
`@`, a tab or a carriage return: OWASP's CSV injection rule) comes back prefixed with a single
quote, so a class named `=HYPERLINK(...)` shows as text. Numbers stay as they are: a numeric
column's `-1.5`, or a text cell that is a plain number such as `-3` or `+2.5e-3`, is read as a
number by every spreadsheet and cannot hold a formula.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.preparation import ClassTarget

FORMULA_START = r"^[=+\-@\t\r]"
PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def escaped(text: str) -> str:
    """`text` as a spreadsheet shows it, never as a formula it runs."""
    if re.match(FORMULA_START, text) and not re.match(PLAIN_NUMBER, text):
        return "'" + text
    return text


def escaped_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column with its formula-leading cells escaped; other columns as they are."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    risky = pc.and_(pc.match_substring_regex(column, FORMULA_START),
                    pc.invert(pc.match_substring_regex(column, PLAIN_NUMBER)))
    quoted = pc.binary_join_element_wise(pa.scalar("'", column.type), column, "")
    return pc.if_else(pc.fill_null(risky, False), quoted, column)


def scored_csv(table: pa.Table, loaded, payload: dict) -> bytes:
    """`table` plus `<target>_predicted` (the label, or the value of a regression target) and,
    for a classifier with classes, one probability column `p_<class>` per class; text cells
    and headers escaped as the module says."""
    prep = loaded.preparation
    target = prep.target
    outputs = np.asarray(payload["outputs"])
    name = loaded.meta.target or "target"
    if "labels" in payload:
        table = table.append_column(f"{name}_predicted",
                                    pa.array(list(payload["labels"])))
        if isinstance(target, ClassTarget) and outputs.shape[1] == len(target.classes):
            for k, value in enumerate(target.classes):
                table = table.append_column(f"p_{value}", pa.array(outputs[:, k]))
    else:
        names = target.names if getattr(target, "names", None) else [name]
        for k, column in enumerate(names if len(names) == outputs.shape[1]
                                   else [f"output_{k}" for k in range(outputs.shape[1])]):
            table = table.append_column(f"{column}_predicted", pa.array(outputs[:, k]))
    table = pa.table([escaped_column(column) for column in table.columns],
                     names=[escaped(column) for column in table.column_names])
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()
