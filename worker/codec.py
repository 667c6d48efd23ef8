"""Arrays <-> bytes for Redis: .npy/.npz only, loaded with allow_pickle=False."""

from __future__ import annotations

import io

import numpy as np

from engine.state import from_bytes, to_bytes


def array_to_bytes(array: np.ndarray) -> bytes:
    """One array as .npy bytes (dtype and shape travel with it)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_parts(array: np.ndarray) -> tuple[bytes, memoryview]:
    """array_to_bytes(array) in two parts, its .npy header and the array's own memory: written
    one after the other they are the same bytes, without a copy of the data."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return header.getvalue(), memoryview(array.reshape(-1).view(np.uint8))


def bytes_to_array(data: bytes) -> np.ndarray:
    """Inverse of array_to_bytes; never unpickles."""
    return np.load(io.BytesIO(data), allow_pickle=False)


# Named arrays <-> one uncompressed .npz: the engine's own checkpoint format, loaded with
# allow_pickle=False.
arrays_to_npz = to_bytes
npz_to_arrays = from_bytes
