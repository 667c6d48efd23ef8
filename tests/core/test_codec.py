"""core.codec: .npy bytes <-> arrays, loaded as views of the bytes and never unpickled."""

from __future__ import annotations

import io

import numpy as np
import pytest

from core.codec import array_to_bytes, bytes_to_array


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
    np.array([3, 1, 2], dtype=np.int64),
    np.empty((0, 5), np.float32),
    np.array([[True, False]]),
], ids=["float32", "fortran", "int64", "empty", "bool"])
def test_round_trip(array):
    back = bytes_to_array(array_to_bytes(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("array", [np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
                                   np.array(2.5)], ids=["fortran", "scalar"])
def test_npy_files_written_by_numpy_load_the_same(array):
    buf = io.BytesIO()
    np.save(buf, array)                      # np.save keeps Fortran order and 0-d shapes
    back = bytes_to_array(buf.getvalue())
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_the_array_is_a_read_only_view_of_the_bytes_not_a_copy():
    data = array_to_bytes(np.ones((1000, 100), np.float32))
    array = bytes_to_array(data)
    assert not array.flags.writeable
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    assert base is data


def test_object_arrays_truncated_data_and_other_files_are_refused():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="never unpickled"):
        bytes_to_array(buf.getvalue())
    with pytest.raises(ValueError, match="truncated"):
        bytes_to_array(array_to_bytes(np.ones(100))[:-8])
    with pytest.raises(ValueError, match="not a readable .npy"):
        bytes_to_array(b"PK\x03\x04 not an npy file")
