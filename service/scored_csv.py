"""A CSV file scored by a model: the rows as they came, with the prediction appended."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from engine.preparation import ClassTarget


def scored_csv(table: pa.Table, loaded, payload: dict) -> bytes:
    """`table` plus `<target>_predicted` (the label, or the value of a regression target) and,
    for a classifier with classes, one probability column `p_<class>` per class."""
    prep = loaded.preparation
    target = prep.target
    outputs = np.asarray(payload["outputs"])
    name = loaded.meta.target or "target"
    if "labels" in payload:
        table = table.append_column(f"{name}_predicted", pa.array(list(payload["labels"])))
        if isinstance(target, ClassTarget) and outputs.shape[1] == len(target.classes):
            for k, value in enumerate(target.classes):
                table = table.append_column(f"p_{value}", pa.array(outputs[:, k]))
    else:
        names = target.names if getattr(target, "names", None) else [name]
        for k, column in enumerate(names if len(names) == outputs.shape[1]
                                   else [f"output_{k}" for k in range(outputs.shape[1])]):
            table = table.append_column(f"{column}_predicted", pa.array(outputs[:, k]))
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()
