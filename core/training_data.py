"""From a stored dataset to what the engine trains on: the checks a job's data must pass (run at
submit by the API and again by the worker), and the preparation fitted on the training rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.dataset_schema import DatasetSchema, beyond_float, whole_numbers
import engine
from engine.preparation import (ClassTarget, DateColumn, Preparation, PreparationSpec,
                                fit_categorical, fit_numeric, fit_scaled_target, recode)

CLASSIFICATION_LOSSES = {"cross_entropy": "classification",
                         "binary_cross_entropy": "multilabel"}


class DataMismatch(ValueError):
    """The data do not fit the job: `field` names the job's field to change."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def task_of(spec: engine.NetworkSpec) -> str:
    """classification (softmax CE), multilabel (sigmoid BCE) or regression."""
    return CLASSIFICATION_LOSSES.get(spec.loss, "regression")


def training_arrays(spec: engine.NetworkSpec, X: np.ndarray, y: np.ndarray,
                    dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """X as `dtype`; y as int64 class labels for 1-D cross-entropy targets, else `dtype`.

    Labels parsed from CSV or JSON arrive as floats; whole-number floats become labels, any
    other value is left for engine.check_data to reject with its own message.
    """
    X = np.asarray(X, dtype=dtype)
    y = np.asarray(y)
    if task_of(spec) == "classification" and y.ndim == 1:
        return X, whole_numbers(y)
    if y.dtype.kind in "fiub":
        y = y.astype(dtype)
    return X, y


def checked_arrays(spec: engine.NetworkSpec, X: np.ndarray, y: np.ndarray,
                   dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """training_arrays, then engine.check_data: ValueError names what does not fit."""
    X, y = training_arrays(spec, X, y, dtype)
    engine.check_data(spec, X, y)
    return X, y


@dataclass(frozen=True)
class Features:
    """The columns a job trains on, and the widest input the preparation can make of them."""

    numeric: list[int]          # slots in the dataset's numeric block (a date: several)
    categorical: list[int]      # slots in its codes block
    width: int                  # input units at most (a category absent from training rows
                                # gets no unit, so the fitted width can be smaller)
    numbers: tuple[str, ...] = ()   # the numeric and date columns used, in schema order


def check_job_data(schema: DatasetSchema, spec: engine.NetworkSpec, prep: PreparationSpec,
                   dtype: str) -> Features:
    """Raise DataMismatch, naming the field and the fix, when the dataset described by
    `schema` cannot train `spec` under `prep`; else the features it will use."""
    numeric, categorical = schema.of_kind("numeric"), schema.of_kind("categorical")
    if prep.mode == "none":
        dates = [c.name for c in schema.of_kind("date")]
        if dates:
            raise DataMismatch("preprocessing", f"the dataset has date columns {dates}; use "
                                                f"preprocessing \"auto\" to train on their "
                                                f"calendar features, or upload them declared "
                                                f"numeric (days since 1970-01-01)")
        if categorical:
            raise DataMismatch("preprocessing", f"the dataset has text (categorical) columns "
                                                f"{[c.name for c in categorical]}; use "
                                                f"preprocessing \"auto\" to one-hot encode them")
        gaps = [c.name for c in numeric if c.missing]
        if gaps:
            raise DataMismatch("preprocessing", f"columns {gaps} have missing values; use "
                                                f"preprocessing \"auto\" (imputes the mean) or "
                                                f"fill them before uploading")
        if beyond_float(schema.max_abs, dtype) is not None:
            raise DataMismatch("dtype", f"the dataset holds values up to {schema.max_abs:.3g}, "
                                        f"beyond float32; train with dtype float64, or use "
                                        f"preprocessing \"auto\", which standardizes them")
        if schema.target.kind == "categorical":
            raise DataMismatch("preprocessing", f"the target {schema.target.names[0]!r} holds "
                                                f"class names; use preprocessing \"auto\" to map "
                                                f"them to output units")
        return Features(list(range(len(numeric))), [], len(numeric),
                        tuple(c.name for c in numeric))
    names = {c.name for c in schema.columns}
    unknown = sorted(set(prep.ignore) - names)
    if unknown:
        raise DataMismatch("preprocessing.ignore", f"{unknown} are not feature columns of the "
                                                   f"dataset; its columns are {sorted(names)}")
    used = [c for c in schema.columns if c.kind != "ignored" and c.name not in prep.ignore]
    # A column the schema calls ignored is left out already: its `problem` only says why.
    broken = [c for c in used if c.problem]
    if broken:
        listed = "; ".join(f"column {c.name!r} {c.problem}" for c in broken)
        names = ", ".join(f"\"{c.name}\"" for c in broken)
        raise DataMismatch("preprocessing.ignore", f"{listed} (or leave them out of this job: "
                                                   f"\"preprocessing\": {{\"ignore\": "
                                                   f"[{names}]}})")
    if not used:
        raise DataMismatch("preprocessing.ignore", "leaves no feature column to train on")
    check_target(schema, spec)
    width = sum(c.width if c.kind != "categorical" else len(c.categories) + (c.missing > 0)
                for c in used)
    numbers = [c.name for c in used if c.kind != "categorical"]
    slots = schema.number_slots()
    codes = {c.name: i for i, c in enumerate(schema.of_kind("categorical"))}
    return Features([slot for name in numbers for slot in slots[name]],
                    [codes[c.name] for c in used if c.kind == "categorical"], width,
                    tuple(numbers))


def check_target(schema: DatasetSchema, spec: engine.NetworkSpec) -> None:
    """Under preparation "auto": the target fits the loss and the output layer."""
    target, units = schema.target, spec.layers[-1].units
    name = ", ".join(target.names)
    if spec.loss == "cross_entropy" and len(target.names) == 1:
        if target.classes is None:
            raise DataMismatch("network.loss", f"the target {name!r} holds numbers that are not "
                                               f"classes (not whole, or too many); use a "
                                               f"regression loss (squared_error, huber)")
        if units != len(target.classes):
            raise DataMismatch("network.layers", f"the output layer has {units} units but the "
                                                 f"target {name!r} has {len(target.classes)} "
                                                 f"classes {short(target.classes)}; give the last "
                                                 f"layer {len(target.classes)} units")
    elif target.kind == "categorical":
        raise DataMismatch("network.loss", f"the target {name!r} holds class names "
                                           f"{short(target.classes)}; use loss cross_entropy "
                                           f"with a softmax output of {len(target.classes)} units")


def short(values: list | None, most: int = 5) -> str:
    values = values or []
    shown = ", ".join(repr(v) for v in values[:most])
    return f"[{shown}{', ...' if len(values) > most else ''}]"


def prepared_arrays(schema: DatasetSchema, numeric: np.ndarray, codes: np.ndarray,
                    y: np.ndarray, spec: engine.NetworkSpec, training: engine.TrainingSpec,
                    prep: PreparationSpec, seed: int, dtype: str
                    ) -> tuple[np.ndarray, np.ndarray, Preparation | None]:
    """(X, Y, preparation) to train on. Under "auto" the preparation is fitted on the rows
    that fit() will train on (engine.split_rows with the seed fit uses), never validation rows,
    so a resumed job fits the very same preparation again."""
    features = check_job_data(schema, spec, prep, dtype)
    if prep.mode == "none":
        X, Y = checked_arrays(spec, numeric, y, dtype)
        return X, Y, None
    train_rows, _ = engine.split_rows(len(y), training.validation_split,
                                      training.seed if training.seed is not None else seed)
    info, cat_info = {c.name: c for c in schema.columns}, schema.of_kind("categorical")
    if features.numeric != list(range(numeric.shape[1])):
        numeric = numeric[:, features.numeric]
    rows = None if len(train_rows) == len(y) else train_rows
    # One mean and scale per slot: a number's, or one of a date's calendar features.
    slot_names = [f"{name}.{f}" if info[name].kind == "date" else name
                  for name in features.numbers for f in (info[name].features or [""])]
    per_slot = iter(fit_numeric(slot_names, numeric, rows))
    fitted = {}
    for name in features.numbers:
        if info[name].kind != "date":
            fitted[name] = next(per_slot)
            continue
        parts = [next(per_slot) for _ in info[name].features]
        fitted[name] = DateColumn(name=name, features=info[name].features,
                                  mean=[p.mean for p in parts], scale=[p.scale for p in parts])
    for slot in features.categorical:
        info = cat_info[slot]
        fitted[info.name] = fit_categorical(info.name, info.categories, codes[train_rows, slot])
    columns = [fitted[c.name] for c in schema.columns if c.name in fitted]
    Y, target = prepared_targets(schema, spec, y, train_rows, dtype)
    preparation = Preparation(columns=columns, target=target)
    recoded = np.stack([recode(codes[:, slot], cat_info[slot].categories,
                               fitted[cat_info[slot].name]) for slot in features.categorical],
                       axis=1) if features.categorical else None
    return preparation.encode(numeric, recoded, dtype), Y, preparation


def prepared_targets(schema: DatasetSchema, spec: engine.NetworkSpec, y: np.ndarray,
                     train_rows: np.ndarray, dtype: str):
    """(Y for the engine, the target's part of the preparation)."""
    target = schema.target
    if spec.loss == "cross_entropy" and y.ndim == 1:
        classes = target.classes
        if target.kind == "categorical":
            indices = y                                   # stored as indices into classes
        else:
            indices = np.searchsorted(np.asarray(classes), y)
        return indices.astype(np.int64), ClassTarget(name=target.names[0], classes=classes)
    if task_of(spec) == "regression":
        scaled = fit_scaled_target(target.names, y[train_rows])
        return scaled.encode(y, dtype), scaled
    _, Y = training_arrays(spec, np.empty((len(y), 0)), y, dtype)
    return Y, None


def input_columns(preparation: Preparation) -> list[dict]:
    """What predict takes of a model with a preparation: each raw column with its kind (and
    categories, or a date's calendar features), in order."""
    return [{"name": c.name, "kind": c.kind,
             **({"categories": c.categories} if c.kind == "categorical" else {}),
             **({"features": c.features} if c.kind == "date" else {})}
            for c in preparation.columns]
