"""User arrays in (JSON lists, NPZ, NPY) -> checked NumPy arrays, with errors naming the field.
Tables (CSV, Parquet, records) have their own readers, service/tables.py."""

from __future__ import annotations

import io
import json
import zipfile
from typing import BinaryIO

import numpy as np
import orjson

from service.errors import ApiError

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}


def _invalid(field: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, f"{field}: {message}", field)


def parse_json(body: bytes):
    """A JSON body. NaN, Infinity and numbers beyond float64 (1e400) are not JSON, but clients
    send them: they are read (as non-finite values), so the array checks can name the field."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise _invalid("body", f"not valid JSON ({exc})") from None


def matrix(value, field: str, dtype=np.float64) -> np.ndarray:
    """A non-empty 2-D array of finite numbers from nested lists."""
    if not isinstance(value, list) or not value:
        raise _invalid(field, "must be a non-empty list of rows (a list of lists of numbers)")
    if not all(isinstance(row, list) for row in value):
        raise _invalid(field, "every row must be a list of numbers")
    widths = {len(row) for row in value}
    if len(widths) != 1:
        raise _invalid(field, f"rows have different lengths ({sorted(widths)[:5]}); every row "
                              f"must have the same number of values")
    if 0 in widths:
        raise _invalid(field, "rows are empty; each row needs at least one value")
    return finite(_numeric(value, field, dtype), field)


def vector_or_matrix(value, field: str) -> np.ndarray:
    """Targets: a non-empty list of numbers, or a list of equal-length lists of numbers."""
    if not isinstance(value, list) or not value:
        raise _invalid(field, "must be a non-empty list (one target per row)")
    if all(isinstance(v, list) for v in value):
        return matrix(value, field)
    if any(isinstance(v, (list, dict, str)) or v is None for v in value):
        raise _invalid(field, "must hold numbers only (or be a list of lists for several targets)")
    return finite(_numeric(value, field, np.float64), field)


def _numeric(value, field: str, dtype) -> np.ndarray:
    try:
        with np.errstate(over="raise"):
            return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise _invalid(field, f"must hold numbers only ({exc})") from None
    except FloatingPointError:
        raise _invalid(field, f"holds numbers too large for {np.dtype(dtype).name}") from None


def finite(array: np.ndarray, field: str) -> np.ndarray:
    if array.dtype.kind == "f" and not all_finite(array):
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise _invalid(field, f"holds NaN or infinite values (first at index {bad}; numbers "
                              f"beyond ±1.8e308 such as 1e400 read as infinite); remove or "
                              f"impute them")
    if array.dtype.kind not in "fiub":
        raise _invalid(field, f"must be numeric, not {array.dtype}")
    return array


def all_finite(array: np.ndarray, block_values: int = 1 << 20) -> bool:
    """np.isfinite(array).all(), a block of rows at a time: a big X never gets a bool twin."""
    if array.ndim == 0 or array.size <= block_values:
        return bool(np.isfinite(array).all())
    rows = max(1, block_values // (array.size // len(array)))
    return all(np.isfinite(array[i:i + rows]).all() for i in range(0, len(array), rows))


def as_float(array: np.ndarray, field: str, dtype: str) -> np.ndarray:
    """Cast to the stored float dtype, refusing values that overflow it."""
    target = FLOAT_DTYPES[dtype]
    # Only a narrowing cast can overflow; max/min make no array-sized temporary (np.abs would).
    narrowing = array.dtype.kind == "f" and array.dtype.itemsize > np.dtype(target).itemsize
    if narrowing and array.size and max(array.max(), -array.min()) > np.finfo(target).max:
        raise _invalid(field, f"holds values too large for {dtype} (largest allowed "
                              f"{np.finfo(target).max:.3g})")
    return array.astype(target, copy=False)


def targets(y: np.ndarray, dtype: str) -> np.ndarray:
    """Whole-number targets (labels, one-hot rows) as int64; anything else as `dtype`."""
    if y.dtype.kind in "iub":
        return y.astype(np.int64, copy=False)
    if np.all(y == np.round(y)) and np.abs(y).max(initial=0) < 2**53:
        return y.astype(np.int64)
    return as_float(y, "y", dtype)


def rows_match(X: np.ndarray, y: np.ndarray, x_field: str = "X", y_field: str = "y") -> None:
    if X.ndim != 2:
        raise _invalid(x_field, f"must be 2-D (rows x features), got shape {list(X.shape)}")
    if y.ndim not in (1, 2):
        raise _invalid(y_field, f"must be 1-D or 2-D, got shape {list(y.shape)}")
    if X.shape[0] == 0:
        raise _invalid(x_field, "the dataset is empty; send at least one row")
    if X.shape[1] == 0:
        raise _invalid(x_field, "has no feature columns; send at least one value per row")
    if y.ndim == 2 and y.shape[1] == 0:
        raise _invalid(y_field, "has no target columns; send one label or value per row")
    if X.shape[0] != y.shape[0]:
        raise _invalid(y_field, f"has {y.shape[0]} rows but X has {X.shape[0]}; "
                                f"give one target per row")


def from_npz(content: bytes | BinaryIO) -> tuple[np.ndarray, np.ndarray]:
    """An .npz (bytes, or a seekable file such as a spooled upload) holding arrays `X` and `y`;
    never unpickled. Read from a file, each array is read straight into its own memory."""
    source = io.BytesIO(content) if isinstance(content, bytes) else content
    try:
        with np.load(source, allow_pickle=False) as npz:
            missing = [name for name in ("X", "y") if name not in npz.files]
            if missing:
                raise _invalid("file", f"the NPZ lacks array(s) {missing}; it holds {npz.files}")
            X, y = npz["X"], npz["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _invalid("file", f"is not a readable NPZ of numeric arrays ({exc})") from None
    return finite(X, "X"), finite(y, "y")


def from_npy(content: bytes, field: str) -> np.ndarray:
    """One .npy array (the binary predict path); never unpickled."""
    try:
        return finite(np.load(io.BytesIO(content), allow_pickle=False), field)
    except (ValueError, OSError, EOFError) as exc:
        raise _invalid(field, f"is not a readable .npy numeric array ({exc})") from None
