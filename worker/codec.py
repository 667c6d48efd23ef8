"""Arrays <-> bytes for Redis: .npy/.npz only, loaded with allow_pickle=False."""

from __future__ import annotations

import io

import numpy as np


def array_to_bytes(array: np.ndarray) -> bytes:
    """One array as .npy bytes (dtype and shape travel with it)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def bytes_to_array(data: bytes) -> np.ndarray:
    """Inverse of array_to_bytes; never unpickles."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def arrays_to_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """Several named arrays as one uncompressed .npz."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npz_to_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Inverse of arrays_to_npz; never unpickles."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
