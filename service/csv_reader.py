"""A CSV upload -> (X, y), read from the spooled upload file a chunk of lines at a time.

X is allocated once, at its final dtype, from a count of the file's lines, and each chunk is
parsed, checked (finite, fits the dtype) and copied in: the API holds about one X, never the
file's text as Python strings (the csv-module reader held ~14x the file). A chunk whose lines
all have the header's number of commas is parsed in C (np.fromstring); any other chunk (quoted
fields, a ragged line, a word) goes through the csv module, which names the line at fault.
"""

from __future__ import annotations

import csv
import io
import itertools
from typing import BinaryIO

import numpy as np

from service.arrays import FLOAT_DTYPES, as_float
from service.errors import ApiError

CHUNK_LINES = 2048
COUNT_BLOCK = 1 << 20


def read_csv(file: BinaryIO, target: list[str] | None,
             dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """A CSV with a header row; `target` names the label column(s) (default: the last one),
    all others are features. X comes back as `dtype`, y as float64 (one column: 1-D)."""
    max_rows = count_lines(file)
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        return _read(text, target, dtype, max_rows)
    except UnicodeDecodeError:
        raise invalid("file", "is not UTF-8 text; upload a CSV or an NPZ file") from None
    finally:
        text.detach()  # the upload's file stays open for its owner


def count_lines(file: BinaryIO) -> int:
    """Lines in the file (a last line without a newline counts); leaves it at the start."""
    file.seek(0)
    lines, last = 0, b"\n"
    while block := file.read(COUNT_BLOCK):
        lines += block.count(b"\n")
        last = block[-1:]
    file.seek(0)
    return lines + (last != b"\n")


def _read(text: io.TextIOWrapper, target: list[str] | None, dtype: str,
          max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    header = next(csv.reader([text.readline()]), None)
    if not header:
        raise invalid("file", "is empty; the CSV needs a header row and data rows")
    header = [h.strip() for h in header]
    target = target or [header[-1]]
    missing = [t for t in target if t not in header]
    if missing:
        raise invalid("target", f"column(s) {missing} are not in the CSV header {header}")
    target_idx = [header.index(t) for t in target]
    feature_idx = [i for i in range(len(header)) if i not in target_idx]
    if not feature_idx:
        raise invalid("target", "names every column; leave at least one feature column")
    X = np.empty((max(max_rows - 1, 0), len(feature_idx)), FLOAT_DTYPES[dtype])
    y = np.empty((len(X), len(target_idx)), np.float64)
    rows, line_no = 0, 2
    while lines := list(itertools.islice(text, CHUNK_LINES)):
        table = parse_chunk(lines, len(header), line_no)
        check_finite(table, rows, header)
        X[rows:rows + len(table)] = as_float(table[:, feature_idx], "X", dtype)
        y[rows:rows + len(table)] = table[:, target_idx]
        rows, line_no = rows + len(table), line_no + len(lines)
    if rows == 0:
        raise invalid("file", "has a header but no data rows")
    return X[:rows], (y[:rows, 0] if len(target_idx) == 1 else y[:rows])


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, f"{field}: {message}", field)


def check_finite(table: np.ndarray, first_row: int, header: list[str]) -> None:
    if not np.isfinite(table).all():
        row, col = np.argwhere(~np.isfinite(table))[0].tolist()
        raise invalid("file", f"data row {first_row + row + 1}, column {header[col]!r} holds NaN "
                              f"or an infinite value (numbers beyond ±1.8e308 such as 1e400 read "
                              f"as infinite); remove or impute them")


def parse_chunk(lines: list[str], width: int, first_line_no: int) -> np.ndarray:
    """(rows, width) float64 from CSV lines; empty lines are skipped."""
    filled = [line for line in lines if line.strip("\r\n")]
    if all(line.count(",") == width - 1 for line in filled):
        joined = "".join(filled).replace("\r", "").replace("\n", ",")
        try:
            values = np.fromstring(joined, sep=",")
        except ValueError:  # a word, an empty field, quotes: let the csv module say where
            values = None
        if values is not None and values.size == len(filled) * width:
            return values.reshape(len(filled), width)
    return _parse_carefully(lines, width, first_line_no)


def _parse_carefully(lines: list[str], width: int, first_line_no: int) -> np.ndarray:
    rows = []  # csv.reader gives [] for an empty line
    for n, row in enumerate(csv.reader(lines), start=first_line_no):
        if not row:
            continue
        if len(row) != width:
            raise invalid("file", f"line {n} has {len(row)} values but the header has {width}")
        rows.append(row)
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), width)
    except ValueError as exc:
        raise invalid("file", f"holds a value that is not a number ({exc}); encode categories "
                              f"as numbers") from None
