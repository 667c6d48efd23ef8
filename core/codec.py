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
    """Inverse of array_to_bytes; never unpickles. The array is a read-only view of `data`,
    not a copy: a worker loading a data set from Redis holds it once, not twice."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f".npy format version {version} is not read here")
        shape, fortran_order, dtype = read_header(stream)
    except (ValueError, EOFError) as exc:
        raise ValueError(f"not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise ValueError("the .npy array holds Python objects, which are never unpickled")
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - stream.tell() < count * dtype.itemsize:
        raise ValueError(f"the .npy array is truncated: {shape} {dtype} needs "
                         f"{count * dtype.itemsize} bytes of data")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)


# Named arrays <-> one uncompressed .npz: the engine's own checkpoint format, loaded with
# allow_pickle=False.
arrays_to_npz = to_bytes
npz_to_arrays = from_bytes
