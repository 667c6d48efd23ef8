"""Preparing a table for a network: impute, standardize, one-hot encode, map classes to output
units, standardize a regression target. Fitted on training rows only, then stored and applied
with the weights wherever the model goes (predict, the inference protocol, ONNX).

A table reaches transform() as two blocks:
    numeric   (n, p) float, NaN where a value is missing: the p numeric columns in order
    codes     (n, q) int: per categorical column the position of the row's value in that
              column's fitted `categories`, MISSING (-1) for a missing value, UNSEEN (-2) for a
              value the preparation never saw
and leaves it as X (n, width): the p numeric columns imputed with their training mean and
standardized, then each categorical column one-hot over its categories, plus one last position
for "missing" when training rows had missing values there. An unseen value, or a missing one
where training had none, encodes as all zeros (never an error), as scikit-learn's
OneHotEncoder(handle_unknown="ignore") does.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

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


Column = Annotated[Union[NumericColumn, CategoricalColumn], Field(discriminator="kind")]


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

    @property
    def numeric(self) -> list[NumericColumn]:
        return [c for c in self.columns if isinstance(c, NumericColumn)]

    @property
    def categorical(self) -> list[CategoricalColumn]:
        return [c for c in self.columns if isinstance(c, CategoricalColumn)]

    @property
    def all_numeric(self) -> bool:
        return not self.categorical

    @property
    def width(self) -> int:
        """Columns of X = the network's input width."""
        return len(self.numeric) + sum(c.width for c in self.categorical)

    def transform(self, numeric: np.ndarray, codes: np.ndarray | None = None,
                  dtype="float32") -> np.ndarray:
        """numeric (n, p) with NaN for missing, codes (n, q) -> X (n, width) of `dtype`."""
        num_cols, cat_cols = self.numeric, self.categorical
        n = len(numeric)
        if numeric.shape != (n, len(num_cols)):
            raise ValueError(f"expected {len(num_cols)} numeric columns, got shape "
                             f"{numeric.shape}")
        X = np.empty((n, self.width), dtype=dtype)
        if num_cols:
            mean = np.array([c.mean for c in num_cols])
            scale = np.array([c.scale for c in num_cols])
            # In float64, a chunk of rows at a time: raw values beyond float32's range (1e300
            # grams) standardize to ordinary numbers, and the temporary stays small.
            step = max(1, CHUNK_ELEMENTS // max(1, len(num_cols)))
            for start in range(0, n, step):
                chunk = np.array(numeric[start:start + step], dtype=np.float64)
                missing = np.isnan(chunk)
                if missing.any():
                    np.copyto(chunk, np.broadcast_to(mean, chunk.shape), where=missing)
                chunk -= mean
                chunk /= scale
                X[start:start + step, :len(num_cols)] = chunk
        if cat_cols:
            codes = np.asarray(codes)
            if codes.shape != (n, len(cat_cols)):
                raise ValueError(f"expected {len(cat_cols)} categorical columns, got shape "
                                 f"{codes.shape}")
            offset = len(num_cols)
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


def fit_numeric(name: str, values: np.ndarray) -> NumericColumn:
    """Mean and standard deviation of the non-missing values (scaled first, so that values
    near the float64 limit do not overflow when squared). All missing: mean 0, scale 1."""
    present = values[~np.isnan(values)].astype(np.float64)
    if present.size == 0:
        return NumericColumn(name=name, mean=0.0, scale=1.0)
    peak = float(np.abs(present).max())
    if peak == 0.0:
        return NumericColumn(name=name, mean=0.0, scale=1.0)
    unit = present / peak
    mean, std = float(unit.mean()) * peak, float(unit.std()) * peak
    return NumericColumn(name=name, mean=mean, scale=std if std > 0 and np.isfinite(std) else 1.0)


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
    fitted = [fit_numeric(name, column) for name, column in
              zip(names, np.asarray(y, dtype=np.float64).reshape(len(y), -1).T)]
    return ScaledTarget(names=names, mean=[c.mean for c in fitted],
                        scale=[c.scale for c in fitted])
