"""Checking that data fits a network, and turning targets into the form the losses use.

Targets by loss:
    cross_entropy           1-D integer labels in [0, units) or 2-D one-hot (n, units)
    binary_cross_entropy    0/1 labels: 1-D when the output has one unit, else (n, units)
    squared_error, huber    finite numbers: 1-D when the output has one unit, else (n, units)
"""
from __future__ import annotations

import numpy as np

from .spec import NetworkSpec, as_network_spec

FINITE_CHECK_ELEMENTS = 1 << 18
"""Elements per chunk when scanning for NaN/inf: one small reused mask, never a full copy."""


def _all_finite(a: np.ndarray) -> bool:
    if not np.issubdtype(a.dtype, np.floating) or a.size == 0:
        return True
    flat = a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)
    rows = max(1, FINITE_CHECK_ELEMENTS // max(1, flat.shape[1]))
    mask = np.empty((min(rows, len(flat)), flat.shape[1]), dtype=bool)
    for i in range(0, len(flat), rows):
        chunk = flat[i:i + rows]
        part = mask[:len(chunk)]
        np.isfinite(chunk, out=part)
        if not part.all():
            return False
    return True


def _host(a, name: str) -> np.ndarray:
    if hasattr(a, "get") and not isinstance(a, np.ndarray):   # a CuPy array
        a = a.get()
    a = np.asarray(a)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {a.dtype}")
    return a


def check_data(spec, X, Y, *, n_inputs: int | None = None) -> None:
    """Raise ValueError, saying what to change, when X and Y do not fit the network `spec`.

    X: (n, n_inputs) numbers; Y as described in this module's docstring. `n_inputs`, when
    given, is the input width the network already has.
    """
    spec = as_network_spec(spec)
    X = _host(X, "X")
    if X.ndim != 2:
        hint = " (for one sample use X.reshape(1, -1))" if X.ndim == 1 else ""
        raise ValueError(f"X must be a 2-D array (rows, features), got shape {X.shape}{hint}")
    n, width = X.shape
    if n == 0 or width == 0:
        raise ValueError(f"X is empty (shape {X.shape}); give at least one row and one feature")
    if n_inputs is not None and width != n_inputs:
        raise ValueError(f"X has {width} features per row, but the network takes {n_inputs} "
                         "inputs; use data with the width the network was built for")
    if not _all_finite(X):
        raise ValueError("X contains NaN or infinite values; remove or impute them first")
    _check_targets(spec, _host(Y, "Y"), n)


def _check_targets(spec: NetworkSpec, Y: np.ndarray, n: int) -> None:
    units = spec.layers[-1].units
    if Y.ndim not in (1, 2):
        raise ValueError(f"Y must be 1-D or 2-D, got shape {Y.shape}")
    if len(Y) != n:
        raise ValueError(f"X has {n} rows but Y has {len(Y)}; give one target per row of X")
    if not _all_finite(Y):
        raise ValueError("Y contains NaN or infinite values; remove those rows first")
    if spec.loss == "cross_entropy":
        if Y.ndim == 1:
            if not np.array_equal(Y, np.round(Y)):
                raise ValueError("cross_entropy needs integer class labels in Y (or one-hot "
                                 "rows); Y has non-integer values")
            lo, hi = Y.min(), Y.max()
            if lo < 0 or hi >= units:
                raise ValueError(f"class labels must lie in [0, {units}) for an output layer "
                                 f"of {units} units, but Y ranges from {lo:g} to {hi:g}; "
                                 "relabel the classes or change the last layer's units")
            return
        if Y.shape[1] != units:
            raise ValueError(f"one-hot Y has {Y.shape[1]} columns but the output layer has "
                             f"{units} units; they must match (or pass 1-D integer labels)")
        if not (np.isin(Y, (0, 1)).all() and (Y.sum(axis=1) == 1).all()):
            raise ValueError("2-D Y for cross_entropy must be one-hot: 0/1 with exactly one 1 "
                             "per row (or pass 1-D integer labels)")
        return
    what = "labels" if spec.loss == "binary_cross_entropy" else "targets"
    if Y.ndim == 1 and units != 1:
        raise ValueError(f"1-D Y gives one {what[:-1]} per row, but the output layer has "
                         f"{units} units; pass Y of shape (n, {units})")
    if Y.ndim == 2 and Y.shape[1] != units:
        raise ValueError(f"Y has {Y.shape[1]} columns but the output layer has {units} "
                         f"units; they must match")
    if spec.loss == "binary_cross_entropy" and not np.isin(Y, (0, 1)).all():
        raise ValueError("binary_cross_entropy needs labels that are 0 or 1; Y has other "
                         "values")


def prepare_targets(spec: NetworkSpec, Y, backend, dtype: str):
    """Y in the loss's form, on the backend's device: labels (n,) intp for cross_entropy,
    else a C-contiguous (n, units) array of `dtype`. Y must have passed check_data."""
    if spec.loss == "cross_entropy":
        Y = _host(Y, "Y")
        labels = Y.argmax(axis=1) if Y.ndim == 2 else Y
        return backend.asarray(np.ascontiguousarray(labels, dtype=np.intp))
    xp = backend.xp
    Y = backend.asarray(Y, dtype=dtype)
    return xp.ascontiguousarray(Y.reshape(len(Y), -1))


def prepare_inputs(X, backend, dtype: str):
    """X as a C-contiguous (n, features) array of `dtype` on the device (no copy if it is)."""
    return backend.xp.ascontiguousarray(backend.asarray(X, dtype=dtype))
