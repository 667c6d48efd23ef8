"""User arrays in (JSON lists, NPZ, NPY) -> checked NumPy arrays, with errors naming the field.
Tables (CSV, Parquet, records) have their own readers, service/tables.py."""

from __future__ import annotations

import io
import json
import lzma
import math
import zipfile
import zlib
from typing import BinaryIO

import numpy as np
import orjson
from numpy.lib import format as npy_format

from core.dataset_schema import beyond_float, whole_numbers
from service.errors import ApiError, invalid
# The decoder pools live in service/pools.py; routes/datasets.py still reaches them here.
from service.pools import decode_json_body, off_loop  # noqa: F401

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}


def parse_json(body: bytes):
    """A JSON body. NaN, Infinity and numbers beyond float64 (1e400) are not JSON, but clients
    send them: they are read (as non-finite values), so the array checks can name the field."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # what json.loads raises
            raise invalid("body", f"not valid JSON ({exc})") from None


def matrix(value, field: str, dtype=np.float64) -> np.ndarray:
    """A non-empty 2-D array of finite numbers from nested lists."""
    return finite(number_rows(value, field, dtype), field)


def number_rows(value, field: str, dtype=np.float64) -> np.ndarray:
    """A non-empty 2-D array from nested lists of numbers, converted once, straight to `dtype`
    (a number beyond its range is refused); not yet checked for NaN or infinities (predict
    checks them in the same pass as its cast, finite_as). Or the same from a float64 array
    read by service.json_numbers (2-D, non-empty)."""
    if isinstance(value, np.ndarray):
        return _numeric(value, field, dtype)
    if not isinstance(value, list) or not value:
        raise invalid(field, "must be a non-empty list of rows (a list of lists of numbers)")
    if not all(isinstance(row, list) for row in value):
        raise invalid(field, "every row must be a list of numbers")
    widths = {len(row) for row in value}
    if len(widths) != 1:
        raise invalid(field, f"rows have different lengths ({sorted(widths)[:5]}); every row "
                              f"must have the same number of values")
    if 0 in widths:
        raise invalid(field, "rows are empty; each row needs at least one value")
    return _numeric(value, field, dtype)


def vector_or_matrix(value, field: str) -> np.ndarray:
    """Targets: a non-empty list of numbers, or a list of equal-length lists of numbers."""
    if not isinstance(value, list) or not value:
        raise invalid(field, "must be a non-empty list (one target per row)")
    if all(isinstance(v, list) for v in value):
        return matrix(value, field)
    if any(isinstance(v, (list, dict, str)) or v is None for v in value):
        raise invalid(field, "must hold numbers only (or be a list of lists for several targets)")
    return finite(_numeric(value, field, np.float64), field)


BLOCK_VALUES = 1 << 16


def _numeric(value: list, field: str, dtype) -> np.ndarray:
    """Nested lists (rows of equal length) as an array, each value converted once. A long list
    is converted a block of rows at a time: each conversion holds the GIL, and a big upload
    parsed in a thread must let the event loop run in between."""
    width = len(value[0]) if isinstance(value[0], list) else 1
    step = max(1, BLOCK_VALUES // max(width, 1))
    try:
        with np.errstate(over="raise"):
            if len(value) <= step:
                return np.asarray(value, dtype=dtype)
            first = np.asarray(value[:step], dtype=dtype)
            out = np.empty((len(value),) + first.shape[1:], dtype=dtype)
            out[:step] = first
            for start in range(step, len(value), step):
                out[start:start + step] = np.asarray(value[start:start + step], dtype=dtype)
            return out
    except (TypeError, ValueError) as exc:
        raise invalid(field, f"must hold numbers only ({exc})") from None
    except (FloatingPointError, OverflowError):
        raise invalid(field, f"holds numbers too large for {np.dtype(dtype).name} (such as "
                              f"10**400); send values within ±{np.finfo(dtype).max:.2g}"
                      ) from None


def finite(array: np.ndarray, field: str) -> np.ndarray:
    if array.dtype.kind == "f" and not all_finite(array):
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise invalid(field, f"holds NaN or infinite values (first at index {bad}; numbers "
                              f"beyond ±1.8e308 such as 1e400 read as infinite); remove or "
                              f"impute them")
    if array.dtype.kind not in "fiub":
        raise invalid(field, f"must be numeric, not {array.dtype}")
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
    # Only a narrowing cast can overflow.
    narrowing = array.dtype.kind == "f" and array.dtype.itemsize > np.dtype(target).itemsize
    if narrowing and beyond_float(array, dtype) is not None:
        raise too_large(field, dtype)
    return array.astype(target, copy=False)


def too_large(field: str, dtype: str) -> ApiError:
    return invalid(field, f"holds values too large for {dtype} (largest allowed "
                           f"{np.finfo(dtype).max:.3g}); use dtype float64")


def finite_as(array: np.ndarray, field: str, dtype: str) -> np.ndarray:
    """finite(array) then as_float(array, dtype), in one pass: max and min give away a NaN
    (both propagate it) or an infinity, and bound the values for a narrowing cast; neither
    makes an array-sized temporary."""
    if array.dtype.kind not in "fiub":
        raise invalid(field, f"must be numeric, not {array.dtype}")
    target = FLOAT_DTYPES[dtype]
    if array.dtype.kind == "f" and array.size:
        high, low = array.max(), array.min()
        if not (np.isfinite(high) and np.isfinite(low)):
            finite(array, field)                # raises, naming the first bad index
        if array.dtype.itemsize > np.dtype(target).itemsize and \
                max(high, -low) > np.finfo(target).max:
            raise invalid(field, f"holds values too large for {dtype}, the model's type "
                                  f"(largest allowed {np.finfo(target).max:.3g})")
    return array.astype(target, copy=False)


def targets(y: np.ndarray, dtype: str) -> np.ndarray:
    """Whole-number targets (labels, one-hot rows) as int64; anything else as `dtype`."""
    if y.dtype.kind == "u" and y.size and y.max() > np.iinfo(np.int64).max:
        raise invalid("y", f"holds the label {y.max()}; integer labels and targets must be "
                            f"below 2**63 (class labels run 0 .. classes-1)")
    if y.dtype.kind in "iub":
        return y.astype(np.int64, copy=False)
    y = whole_numbers(y)
    return y if y.dtype.kind == "i" else as_float(y, "y", dtype)


def rows_match(X: np.ndarray, y: np.ndarray, x_field: str = "X", y_field: str = "y") -> None:
    if X.ndim != 2:
        raise invalid(x_field, f"must be 2-D (rows x features), got shape {list(X.shape)}")
    if y.ndim not in (1, 2):
        raise invalid(y_field, f"must be 1-D or 2-D, got shape {list(y.shape)}")
    if X.shape[0] == 0:
        raise invalid(x_field, "the dataset is empty; send at least one row")
    if X.shape[1] == 0:
        raise invalid(x_field, "has no feature columns; send at least one value per row")
    if y.ndim == 2 and y.shape[1] == 0:
        raise invalid(y_field, "has no target columns; send one label or value per row")
    if X.shape[0] != y.shape[0]:
        raise invalid(y_field, f"has {y.shape[0]} rows but X has {X.shape[0]}; "
                                f"give one target per row")


NPY_MAGIC = b"\x93NUMPY"
MAX_NPY_HEADER = 10_000   # bytes; numpy's own limit for a header it reads without trust
READ_CHUNK = 1 << 20


def npy_header(stream: BinaryIO, field: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from the header of the .npy at the stream's position;
    reads the header alone (at most MAX_NPY_HEADER bytes), never the data. Refuses anything
    but plain numbers: pickled objects, strings, records."""
    prefix = stream.read(len(NPY_MAGIC) + 2)
    if prefix[:len(NPY_MAGIC)] != NPY_MAGIC or len(prefix) < len(NPY_MAGIC) + 2:
        hint = (" (it looks like an NPZ archive: send one array as .npy here, NPZ files to "
                "/v1/datasets)" if prefix.startswith(b"PK") else "")
        raise invalid(field, f"is not a .npy array: it lacks the .npy header{hint}")
    major = prefix[-2]
    if major not in (1, 2):
        raise invalid(field, f"is a .npy array of format version {major}; save it with "
                              f"numpy.save (versions 1 and 2 are read)")
    length_bytes = stream.read(2 if major == 1 else 4)
    length = int.from_bytes(length_bytes, "little") if len(length_bytes) in (2, 4) else -1
    if not 0 < length <= MAX_NPY_HEADER:
        raise invalid(field, f"has a .npy header of {length} bytes; at most {MAX_NPY_HEADER}")
    header = stream.read(length)
    reader = (npy_format.read_array_header_1_0 if major == 1 else
              npy_format.read_array_header_2_0)
    try:
        source = io.BytesIO(prefix + length_bytes + header)
        npy_format.read_magic(source)
        shape, fortran, dtype = reader(source)
    except Exception as exc:  # numpy's header parser raises what its tokenizer raises
        raise invalid(field, f"has an unreadable .npy header ({str(exc)[:200]})") from None
    if dtype.hasobject:
        raise invalid(field, "holds Python objects, which would have to be unpickled; send "
                              "numbers only")
    if dtype.kind not in "fiub" or dtype.names is not None or dtype.subdtype is not None:
        raise invalid(field, f"must be numeric, not {dtype}")
    if any(n < 0 for n in shape):
        raise invalid(field, f"declares the shape {list(shape)}")
    return shape, fortran, dtype


def _shaped(flat: np.ndarray, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


def from_npy(content: bytes, field: str) -> np.ndarray:
    """One .npy array (the binary predict path), viewed in place in `content` (read-only, no
    copy). Its header must declare exactly the bytes that follow it, so a huge declared shape
    costs nothing; never unpickled. Not checked for NaN or infinities: predict does that in
    the pass that casts it (finite_as)."""
    stream = io.BytesIO(content)
    shape, fortran, dtype = npy_header(stream, field)
    count, offset = math.prod(shape), stream.tell()
    if count * dtype.itemsize != len(content) - offset:
        raise invalid(field, f"declares shape {list(shape)} of {dtype} ({count * dtype.itemsize}"
                              f" bytes) but holds {len(content) - offset} bytes of data")
    flat = np.frombuffer(content, dtype=dtype, count=count, offset=offset)
    return _shaped(flat, shape, fortran)


def from_npz(content: bytes | BinaryIO, limits, dtype: str = "float32"
             ) -> tuple[np.ndarray, np.ndarray]:
    """Arrays `X` and `y` of an .npz (bytes, or a seekable file such as a spooled upload).

    Both members' .npy headers are checked against the dataset limits (rows, and the bytes
    they would take as stored in `dtype`) before any data is decompressed; then each array
    is decompressed straight into its own memory, and a member holding more or less data than
    its header declares is refused. Nothing is unpickled."""
    source = io.BytesIO(content) if isinstance(content, bytes) else content
    try:
        with zipfile.ZipFile(source) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            missing = [name for name in ("X", "y") if name not in members]
            if missing:
                raise invalid("file", f"the NPZ lacks array(s) {missing}; it holds "
                                       f"{sorted(members)[:20]}")
            streams = {name: archive.open(members[name]) for name in ("X", "y")}
            headers = {name: npy_header(stream, name) for name, stream in streams.items()}
            _check_declared(headers, limits, dtype)
            X, y = (_read_data(streams[name], *headers[name], name) for name in ("X", "y"))
    except (OSError, ValueError, RuntimeError, EOFError, NotImplementedError,
            zipfile.BadZipFile, zlib.error, lzma.LZMAError) as exc:  # each codec its own
        raise invalid("file", f"is not a readable NPZ of numeric arrays ({exc})") from None
    return finite(X, "X"), finite(y, "y")


def _check_declared(headers: dict, limits, dtype: str) -> None:
    """413 for an NPZ whose declared shapes are over the dataset limits
    (service.upload_limits): rows, and bytes as stored (X in `dtype`, y 8 bytes a value)."""
    x_shape, y_shape = headers["X"][0], headers["y"][0]
    limits.admit(x_shape[0] if x_shape else 1,
                 math.prod(x_shape) * np.dtype(FLOAT_DTYPES[dtype]).itemsize
                 + math.prod(y_shape) * 8, "X")


def _read_data(stream: BinaryIO, shape: tuple[int, ...], fortran: bool, dtype: np.dtype,
               field: str) -> np.ndarray:
    """The member's data, decompressed chunk by chunk into an array of the declared size."""
    flat = np.empty(math.prod(shape), dtype=dtype)
    buffer, got = memoryview(flat.view(np.uint8)), 0
    while got < len(buffer):
        n = stream.readinto(buffer[got:got + READ_CHUNK])
        if not n:
            raise invalid(field, f"holds {got} bytes of data where its .npy header declares "
                                  f"{len(buffer)} (shape {list(shape)} of {dtype})")
        got += n
    if stream.read(1):
        raise invalid(field, f"holds more data than its .npy header declares (shape "
                              f"{list(shape)} of {dtype})")
    return _shaped(flat, shape, fortran)
