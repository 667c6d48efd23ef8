"""What a dataset's columns hold: recorded at upload, shown by GET /v1/datasets/{id}, read at
job submit (to check a job against the data) and by the worker (to fit the preparation).

A dataset is stored as three arrays (see core.store):
    numeric   (n, p) float: the `numeric` feature columns and each `date` column's calendar
              features (its `features`, engine.calendar: one slot each), in schema order, NaN
              where missing
    codes     (n, q) int32: the `categorical` feature columns, each value's index in that
              column's `categories`, -1 where missing
    y         (n,) or (n, k): float64 values of a numeric target, int64 indices into `classes`
              of a categorical one
Columns of kind `ignored` are recorded (with `problem` saying why, when the service decided)
but not stored.
"""

from __future__ import annotations

import datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.calendar import DATE_FEATURES
from engine.preparation import column_moments

ColumnKind = Literal["numeric", "categorical", "date", "ignored"]
COLUMN_KINDS = ("numeric", "categorical", "ignored")
"""The kinds an upload may declare (`columns=`); `date` is found from the values."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnInfo(_Record):
    name: str
    kind: ColumnKind
    missing: int = Field(0, description="rows without a value")
    declared: bool = Field(False, description="the kind was given at upload (`columns`)")
    problem: str | None = Field(
        None, description="why this column cannot serve as a feature as it is, and the fix")
    # numeric columns
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    # categorical columns
    categories: list[str] | None = Field(None, description="the distinct values, sorted")
    # date columns (min and max: days since 1970-01-01)
    features: list[str] | None = Field(
        None, description="a date column's calendar features, in order",
        json_schema_extra={"items": {"enum": list(DATE_FEATURES)}})
    earliest: str | None = Field(None, description="the first date, ISO 8601 (UTC)")
    latest: str | None = Field(None, description="the last date, ISO 8601 (UTC)")

    @property
    def width(self) -> int:
        """Slots taken in the stored numeric block: a date's features, else one."""
        return len(self.features) if self.features else 1

    @property
    def usable(self) -> bool:
        return self.kind != "ignored" and self.problem is None


class TargetInfo(_Record):
    names: list[str] = Field(description="the target column(s)")
    kind: Literal["numeric", "categorical"]
    classes: list[str] | list[int] | None = Field(
        None, description="distinct values of a one-column target that can be classes (strings, "
                          "or whole numbers up to BACKPROP_MAX_CATEGORIES), sorted")
    rows_dropped: int = Field(0, description="rows without a target value, left out")


class DatasetSchema(_Record):
    columns: list[ColumnInfo]
    target: TargetInfo

    def of_kind(self, kind: str) -> list[ColumnInfo]:
        """The stored columns of `kind` (numeric or categorical), in storage order."""
        return [c for c in self.columns if c.kind == kind]

    def number_slots(self) -> dict[str, list[int]]:
        """{column: its slots in the numeric block} for numeric and date columns."""
        slots, start = {}, 0
        for c in self.columns:
            if c.kind in ("numeric", "date"):
                slots[c.name] = list(range(start, start + c.width))
                start += c.width
        return slots

    @property
    def max_abs(self) -> float:
        """The largest magnitude among numeric feature values (0 without any)."""
        return max((max(abs(c.min), abs(c.max)) for c in self.of_kind("numeric")
                    if c.min is not None), default=0.0)


def numeric_infos(names: list[str], block: np.ndarray) -> list[ColumnInfo]:
    """ColumnInfo of each column of a numeric block (n, p), NaN a missing value."""
    moments = column_moments(block)
    infos = []
    for j, name in enumerate(names):
        present = moments.count[j] > 0
        stats = {key: float(getattr(moments, field)[j]) if present else None for key, field in
                 (("min", "minimum"), ("max", "maximum"), ("mean", "mean"), ("std", "std"))}
        infos.append(ColumnInfo(name=name, kind="numeric", missing=len(block) - int(
            moments.count[j]), problem=None if present else f"has no values; ignore it "
                                                            f"(ignore={name})", **stats))
    return infos


def date_info(name: str, features: list[str], days: np.ndarray) -> ColumnInfo:
    """ColumnInfo of a date column from its days since 1970 (n,), NaN a missing date."""
    present = days[~np.isnan(days)]
    info = ColumnInfo(name=name, kind="date", features=features,
                      missing=len(days) - len(present))
    if not len(present):
        info.problem = f"has no values; ignore it (ignore={name})"
        return info
    info.min, info.max = float(present.min()), float(present.max())
    info.earliest, info.latest = (iso_text(d, "hour" in features) for d in (info.min, info.max))
    return info


def iso_text(days: float, with_time: bool) -> str:
    """days since 1970 as ISO 8601 text: a date, or a date and time to the second."""
    try:
        moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=round(days * 86400))
    except OverflowError:               # a Parquet date beyond the years 1 to 9999
        return f"{days:g} days since 1970-01-01"
    return moment.isoformat() if with_time else moment.date().isoformat()


WHOLE_LIMIT = 2**53
"""Whole floats below this magnitude are exact integers in float64."""


def whole_numbers(y: np.ndarray) -> np.ndarray:
    """The one rule for numbers that may be labels: float values that are all whole (and
    finite, below 2**53) become int64; anything else comes back as it is."""
    if y.dtype.kind != "f" or not y.size:
        return y
    if np.all(np.isfinite(y)) and np.all(y == np.round(y)) and np.abs(y).max() < WHOLE_LIMIT:
        return y.astype(np.int64)
    return y


def beyond_float(values: np.ndarray | float, dtype) -> float | None:
    """The one "fits the float type" check: the largest magnitude among `values` (NaN
    skipped) when it is beyond what `dtype` holds (it would become infinite), else None."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind != "f" or not values.size:
            return None
        # max and min make no array-sized temporary (np.abs would)
        largest = float(max(np.nanmax(values, initial=0.0), -np.nanmin(values, initial=0.0)))
    else:
        largest = abs(float(values))
    return largest if largest > np.finfo(dtype).max else None


def numeric_targets(y: np.ndarray) -> np.ndarray:
    """(n, k) float64 targets -> (n,) for one column, int64 when every value is whole."""
    return whole_numbers(y[:, 0] if y.shape[1] == 1 else y)


def whole_classes(y: np.ndarray, cap: int) -> list[int] | None:
    """The sorted distinct values of a one-column whole-number target, when few enough to be
    classes."""
    if y.ndim != 1 or y.dtype.kind != "i":
        return None
    classes = np.unique(y)
    return [int(c) for c in classes] if len(classes) <= cap else None


def arrays_schema(numeric: np.ndarray, y: np.ndarray, max_categories: int,
                  rows_dropped: int = 0) -> DatasetSchema:
    """The schema of plain arrays (NPZ or JSON X and y, a job's inline data): numeric columns
    x0..x{d-1}, and a numeric target y (y0..y{k-1} for several columns)."""
    columns = numeric_infos([f"x{j}" for j in range(numeric.shape[1])], numeric)
    names = ["y"] if y.ndim == 1 else [f"y{k}" for k in range(y.shape[1])]
    return DatasetSchema(columns=columns, target=TargetInfo(
        names=names, kind="numeric", rows_dropped=rows_dropped,
        classes=whole_classes(y, max_categories)))
