"""NumPy arrays to and from the bodies the API reads and answers (.npz uploads, .npy predicts).
The server has its own decoder: this distribution shares no code with it."""

from __future__ import annotations

import io

import numpy as np

NPZ, NPY = "application/x-npz", "application/x-npy"


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """Named arrays as one uncompressed .npz (an upload's X and y)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_bytes(X: np.ndarray) -> bytes:
    """One array as .npy bytes (the predict endpoint's binary body)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(X), allow_pickle=False)
    return buf.getvalue()


def load_npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def load_npz(content: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(content), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
