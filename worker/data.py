"""Turning stored arrays into what the engine trains on, and describing a trained model."""

from __future__ import annotations

import numpy as np

import engine

CLASSIFICATION_LOSSES = {"cross_entropy": "classification",
                         "binary_cross_entropy": "multilabel"}


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
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        return X, y
    if y.dtype.kind in "fiub":
        y = y.astype(dtype)
    return X, y


def checked_arrays(spec: engine.NetworkSpec, X: np.ndarray, y: np.ndarray,
                   dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """training_arrays, then engine.check_data: ValueError names what does not fit."""
    X, y = training_arrays(spec, X, y, dtype)
    engine.check_data(spec, X, y)
    return X, y
