"""Preparing a table for a network: impute, standardize, one-hot encode, map classes to output
units, standardize a regression target. Fitted on training rows only, then stored and applied
with the weights wherever the model goes (predict, the inference protocol, ONNX).

A table reaches transform() as two blocks:
    numeric   (n, p) float, NaN where a value is missing: the p columns that arrive as one
              number each (`numbers`: numeric columns, and date columns as days since
              1970-01-01), in order
    codes     (n, q) int: per categorical column the position of the row's value in that
              column's fitted `categories`, MISSING (-1) for a missing value, UNSEEN (-2) for a
              value the preparation never saw
and leaves it as X (n, width): each date column first becomes its calendar features
(engine.calendar: derive()), then every number and feature is imputed with its training mean
and standardized (encode()), then each categorical column one-hot over its categories, plus one last position
for "missing" when training rows had missing values there. An unseen value, or a missing one
where training had none, encodes as all zeros (never an error), as scikit-learn's
OneHotEncoder(handle_unknown="ignore") does.
"""
from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal, NamedTuple, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from engine.calendar import DATE_FEATURES, date_features

MISSING = -1
UNSEEN = -2
CHUNK_ELEMENTS = 1 << 20
"""Numeric values standardized at a time (8 MiB of float64)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


PREPARATION_MODES = {
    "auto": "impute, standardize and one-hot encode features; map classes to output units; "
            "standardize a regression target",
    "none": "train on the numbers as they are (numeric features without missing values)",
}


class PreparationSpec(_Record):
    """What a training job asks for: `"auto"`, `"none"`, or {"mode": "auto", "ignore": [...]}
    to leave columns out for this job."""

    mode: str = Field("auto", json_schema_extra={"enum": sorted(PREPARATION_MODES)})
    ignore: list[str] = Field(default_factory=list, description="feature columns left out")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"mode": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known_mode(self):
        if self.mode not in PREPARATION_MODES:
            raise ValueError(f"unknown preprocessing {self.mode!r}; valid modes: "
                             f"{', '.join(sorted(PREPARATION_MODES))}")
        if self.mode == "none" and self.ignore:
            raise ValueError("ignore needs preprocessing mode auto (with none every stored "
                             "numeric column is used as it is)")
        return self


class NumericColumn(_Record):
    """x -> (x - mean) / scale, with a missing x taken as the mean (so it becomes 0)."""

    kind: Literal["numeric"] = "numeric"
    name: str
    mean: float
    scale: float = Field(gt=0, description="the training rows' standard deviation (1 if 0)")


class DateColumn(_Record):
    """days since 1970 -> its calendar features (engine.calendar), each standardized as a
    NumericColumn is; a missing date takes every feature's mean."""

    kind: Literal["date"] = "date"
    name: str
    features: list[str] = Field(json_schema_extra={"enum": list(DATE_FEATURES)})
    mean: list[float]
    scale: list[float]

    @property
    def width(self) -> int:
        return len(self.features)


class CategoricalColumn(_Record):
    """x -> one-hot over `categories` (+ a missing position when `missing_level`)."""

    kind: Literal["categorical"] = "categorical"
    name: str
    categories: list[str]
    missing_level: bool = Field(
        False, description="training rows had missing values here: they get their own unit")
    _positions: dict[str, int] | None = PrivateAttr(default=None)

    @property
    def width(self) -> int:
        return len(self.categories) + self.missing_level

    def position(self, value: str) -> int:
        """The position of `value` in categories, or UNSEEN."""
        if self._positions is None:
            self._positions = {c: i for i, c in enumerate(self.categories)}
        return self._positions.get(value, UNSEEN)


Column = Annotated[Union[NumericColumn, DateColumn, CategoricalColumn],
                   Field(discriminator="kind")]


class ClassTarget(_Record):
    """Output unit i answers classes[i] (the original values: strings stay strings)."""

    kind: Literal["classes"] = "classes"
    name: str
    classes: list[str] | list[int] | list[float]

    def labels(self, indices: np.ndarray) -> list:
        """Class values for output-unit indices (n,)."""
        return [self.classes[i] for i in indices.tolist()]


class ScaledTarget(_Record):
    """Regression targets standardized for training; outputs come back in their units."""

    kind: Literal["scaled"] = "scaled"
    names: list[str]
    mean: list[float]
    scale: list[float]

    def encode(self, y: np.ndarray, dtype) -> np.ndarray:
        """(n,) or (n, k) targets -> standardized, as `dtype`."""
        mean, scale = self._arrays(y.ndim)
        return ((np.asarray(y, dtype=np.float64) - mean) / scale).astype(dtype)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """(n, k) network outputs -> the target's units, in place when outputs are float."""
        mean, scale = self._arrays(2)
        outputs *= scale.astype(outputs.dtype)
        outputs += mean.astype(outputs.dtype)
        return outputs

    def _arrays(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        mean, scale = np.asarray(self.mean), np.asarray(self.scale)
        return (mean[0], scale[0]) if ndim == 1 else (mean, scale)


Target = Annotated[Union[ClassTarget, ScaledTarget], Field(discriminator="kind")]


class Preparation(_Record):
    """A fitted preparation: the columns a model takes, in order, and how its target maps."""

    columns: list[Column]
    target: Target | None = None

    # Worked out once (a record is not changed once fitted): listing 784 columns by kind on
    # every call cost a one-row predict about 0.3 ms.
    @cached_property
    def _by_kind(self) -> tuple:
        """(numbers, categorical columns, the features' means, their scales, width)."""
        numbers = [c for c in self.columns if not isinstance(c, CategoricalColumn)]
        categorical = [c for c in self.columns if isinstance(c, CategoricalColumn)]
        mean = [m for c in numbers for m in (c.mean if isinstance(c, DateColumn) else [c.mean])]
        scale = [s for c in numbers
                 for s in (c.scale if isinstance(c, DateColumn) else [c.scale])]
        return (numbers, categorical, np.array(mean), np.array(scale),
                len(mean) + sum(c.width for c in categorical))

    @property
    def numbers(self) -> list[NumericColumn | DateColumn]:
        """The columns that arrive as one number each: numeric ones, and dates as days since
        1970-01-01."""
        return self._by_kind[0]

    @property
    def numeric(self) -> list[NumericColumn]:
        return [c for c in self._by_kind[0] if isinstance(c, NumericColumn)]

    @cached_property  # read on every predict: 784 isinstance checks cost ~60 us a request
    def dates(self) -> list[DateColumn]:
        return [c for c in self._by_kind[0] if isinstance(c, DateColumn)]

    @property
    def categorical(self) -> list[CategoricalColumn]:
        return self._by_kind[1]

    @property
    def all_numeric(self) -> bool:
        """No text column: rows can come as a matrix of numbers (dates as days since 1970)."""
        return not self._by_kind[1]

    @property
    def per_column(self) -> bool:
        """Text or date columns: the inference protocol and ONNX take one input per column."""
        return not self.all_numeric or bool(self.dates)

    @property
    def width(self) -> int:
        """Columns of X = the network's input width."""
        return self._by_kind[4]

    def transform(self, numeric: np.ndarray, codes: np.ndarray | None = None,
                  dtype="float32") -> np.ndarray:
        """numeric (n, p) with NaN for missing, codes (n, q) -> X (n, width) of `dtype`."""
        return self.encode(self.derive(numeric), codes, dtype)

    def derive(self, numeric: np.ndarray) -> np.ndarray:
        """numeric (n, p): one value per column of `numbers` -> the features' block, each date
        column's days replaced by its calendar features (a new float64 block if any)."""
        numbers = self._by_kind[0]
        if numeric.ndim != 2 or numeric.shape[1] != len(numbers):
            raise ValueError(f"expected {len(numbers)} numeric columns, got shape "
                             f"{numeric.shape}")
        if not self.dates:
            return numeric
        parts = [date_features(numeric[:, j], c.features) if isinstance(c, DateColumn)
                 else np.asarray(numeric[:, j:j + 1], dtype=np.float64)
                 for j, c in enumerate(numbers)]
        return np.concatenate(parts, axis=1)

    def encode(self, features: np.ndarray, codes: np.ndarray | None = None,
               dtype="float32") -> np.ndarray:
        """features (n, f): numbers and date features as derive() makes them (and the stored
        dataset holds them), codes (n, q) -> X (n, width) of `dtype`."""
        _, cat_cols, mean, scale, width = self._by_kind
        n = len(features)
        if features.shape != (n, len(mean)):
            raise ValueError(f"expected {len(mean)} numeric features, got shape "
                             f"{features.shape}")
        X = np.empty((n, width), dtype=dtype)
        if len(mean):
            standardize(features, mean, scale, X[:, :len(mean)])
        if cat_cols:
            codes = np.asarray(codes)
            if codes.shape != (n, len(cat_cols)):
                raise ValueError(f"expected {len(cat_cols)} categorical columns, got shape "
                                 f"{codes.shape}")
            offset = len(mean)
            X[:, offset:] = 0
            rows = np.arange(n)
            for j, column in enumerate(cat_cols):
                position = codes[:, j]
                if column.missing_level:
                    position = np.where(position == MISSING, len(column.categories), position)
                known = position >= 0
                X[rows[known], offset + position[known]] = 1
                offset += column.width
        return X


class Moments(NamedTuple):
    """Per column of a block: count of present values, min, max, mean, standard deviation
    (NaN where a column has no value)."""

    count: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def column_moments(block: np.ndarray, rows: np.ndarray | None = None) -> Moments:
    """Moments of the present (non-NaN) values of each column of block (n, p), over `rows`
    (all rows by default): a chunk of rows at a time in float64, chunks merged as Chan et
    al.'s parallel variance does. Squares of float32 values cannot overflow float64; float64
    blocks are first divided by each column's largest magnitude, which costs a second pass."""
    p = block.shape[1]
    n_rows = len(block) if rows is None else len(rows)
    step = max(1, CHUNK_ELEMENTS // max(1, p))
    chunks = [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]

    def chunk(start: int, end: int) -> np.ndarray:
        part = block[start:end] if rows is None else block[rows[start:end]]
        return np.array(part, dtype=np.float64)

    peak = np.ones(p)
    if block.dtype.itemsize > 4:
        peak = np.zeros(p)
        for start, end in chunks:
            peak = np.fmax(peak, np.fmax.reduce(np.abs(chunk(start, end)), axis=0))
        peak[~(peak > 0) | ~np.isfinite(peak)] = 1.0
    count, mean, m2 = np.zeros(p), np.zeros(p), np.zeros(p)
    low, high = np.full(p, np.nan), np.full(p, np.nan)
    for start, end in chunks:
        values = chunk(start, end)
        low = np.fmin(low, np.fmin.reduce(values, axis=0))
        high = np.fmax(high, np.fmax.reduce(values, axis=0))
        values /= peak
        missing = np.isnan(values)
        gaps = missing.any()
        if gaps:
            values[missing] = 0.0
        k = (len(values) - missing.sum(axis=0)) if gaps else np.full(p, float(len(values)))
        chunk_mean = np.divide(values.sum(axis=0), k, out=np.zeros(p), where=k > 0)
        values -= chunk_mean
        if gaps:
            values[missing] = 0.0
        chunk_m2 = np.einsum("ij,ij->j", values, values)
        merged = count + k
        weight = np.divide(k, merged, out=np.zeros(p), where=merged > 0)
        delta = chunk_mean - mean
        mean += delta * weight
        m2 += chunk_m2 + delta * delta * count * weight
        count = merged
    present = count > 0
    std = np.sqrt(np.divide(m2, count, out=np.zeros(p), where=present)) * peak
    nan = np.full(p, np.nan)
    return Moments(count, low, high, np.where(present, mean * peak, nan),
                   np.where(present, std, nan))


def fit_numeric(names: list[str], block: np.ndarray,
                rows: np.ndarray | None = None) -> list[NumericColumn]:
    """Mean and standard deviation of each column's present values over `rows` of block
    (n, p) float with NaN for missing. A column without values: mean 0; constant: scale 1."""
    moments = column_moments(block, rows)
    return [NumericColumn(name=name, mean=float(m) if np.isfinite(m) else 0.0,
                          scale=float(sd) if np.isfinite(sd) and sd > 0 else 1.0)
            for name, m, sd in zip(names, moments.mean, moments.std)]


def standardize(numeric: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                out: np.ndarray) -> np.ndarray:
    """out[...] = (numeric - mean) / scale with NaN taken as the mean (giving 0), a chunk of
    rows at a time, in the wider of the two arrays' float types: float64 data (values past
    float32's range) are standardized before they are narrowed."""
    work = np.promote_types(numeric.dtype, out.dtype) if numeric.dtype.kind == "f" else out.dtype
    mean, scale = mean.astype(work), scale.astype(work)
    step = max(1, CHUNK_ELEMENTS // max(1, numeric.shape[1]))
    for start in range(0, len(numeric), step):
        target = out[start:start + step]
        chunk = target if work == out.dtype else np.empty(target.shape, dtype=work)
        chunk[...] = numeric[start:start + step]
        missing = np.isnan(chunk)
        if missing.any():
            np.copyto(chunk, np.broadcast_to(mean, chunk.shape), where=missing)
        chunk -= mean
        chunk /= scale
        if chunk is not target:
            target[...] = chunk
    return out


def fit_categorical(name: str, categories: list[str], codes: np.ndarray) -> CategoricalColumn:
    """The categories (of `categories`, in their order) that occur in `codes`, codes (n,)
    indexing `categories` with MISSING for a missing value."""
    present = codes[codes >= 0]
    counts = np.bincount(present, minlength=len(categories))
    return CategoricalColumn(name=name, categories=[c for c, k in zip(categories, counts) if k],
                             missing_level=bool((codes == MISSING).any()))


def recode(codes: np.ndarray, categories: list[str], column: CategoricalColumn) -> np.ndarray:
    """codes indexing `categories` (MISSING kept) -> positions in column.categories (UNSEEN
    for a category the column was not fitted with)."""
    lookup = np.array([column.position(c) for c in categories] + [MISSING], dtype=np.int64)
    return lookup[np.where(codes >= 0, codes, len(categories))]


def fit_scaled_target(names: list[str], y: np.ndarray) -> ScaledTarget:
    """Standardization of regression targets y (n,) or (n, k), from the training rows."""
    fitted = fit_numeric(names, np.asarray(y, dtype=np.float64).reshape(len(y), -1))
    return ScaledTarget(names=names, mean=[c.mean for c in fitted],
                        scale=[c.scale for c in fitted])
