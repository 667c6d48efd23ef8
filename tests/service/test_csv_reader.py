"""service/csv_reader.py called directly: files of several chunks, errors that name the line."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service import csv_reader
from service.csv_reader import read_csv
from service.errors import ApiError
from worker.codec import array_to_bytes, npy_parts


def csv_file(table: np.ndarray, header: str, newline: str = "\n") -> io.BytesIO:
    lines = [header] + [",".join(repr(float(v)) for v in row) for row in table]
    return io.BytesIO((newline.join(lines) + newline).encode())


def refused(file: io.BytesIO, target=None) -> str:
    with pytest.raises(ApiError) as caught:
        read_csv(file, target, "float32")
    assert caught.value.status == 422
    return caught.value.message


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_file_of_several_chunks_reads_as_numpy_reads_it(newline):
    rows = 2 * csv_reader.CHUNK_LINES + 17
    table = np.random.default_rng(0).normal(size=(rows, 4))
    table[:, 2] = np.arange(rows) % 3
    X, y = read_csv(csv_file(table, "a,b,label,c", newline), ["label"], "float64")
    assert X.dtype == np.float64 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, table[:, [0, 1, 3]])
    np.testing.assert_array_equal(y, table[:, 2])
    X32, _ = read_csv(csv_file(table, "a,b,label,c", newline), None, "float32")
    np.testing.assert_array_equal(X32, table[:, :3].astype(np.float32))


def test_quoted_numbers_and_empty_lines_take_the_careful_path():
    text = b'a,b,label\n"1.5",2,0\n\n3,"4",1\n'
    X, y = read_csv(io.BytesIO(text), None, "float32")
    np.testing.assert_array_equal(X, [[1.5, 2], [3, 4]])
    np.testing.assert_array_equal(y, [0, 1])


def test_errors_far_into_the_file_name_the_line_or_row():
    late = csv_reader.CHUNK_LINES + 100  # in the second chunk
    good = "1,2,0\n" * (late - 2)
    # an empty line, a good one, then a short one: line numbers count every line
    assert f"line {late + 2} has 2 values" in refused(io.BytesIO(
        f"a,b,label\n{good}\n1,2,0\n1,2\n".encode()))
    assert "not a number" in refused(io.BytesIO(f"a,b,label\n{good}1,x,0\n".encode()))
    assert f"data row {late - 1}, column 'b'" in refused(
        io.BytesIO(f"a,b,label\n{good}1,nan,0\n".encode()))


def test_npy_parts_are_the_npy_bytes_without_a_copy():
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    header, data = npy_parts(X)
    assert header + data.tobytes() == array_to_bytes(X)
    assert np.shares_memory(np.frombuffer(data, np.uint8), X)
    empty_header, empty_data = npy_parts(np.zeros((2, 0)))
    assert empty_data.nbytes == 0 and empty_header == array_to_bytes(np.zeros((2, 0)))
