"""service/tables.py called directly: how columns get their kinds, widening of types a later
block contradicts, missing values, limits, and the arrays worker/schema.py describes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from engine.preparation import column_moments
from service.errors import ApiError
from service.table_builder import TableOptions
from service.tables import count_lines, read_csv_table, read_records, table_from_arrays
from service.upload_limits import DatasetLimits


def read(text: bytes, **options):
    limits = {key: options.pop(key) for key in ("max_rows", "max_bytes", "max_categories")
              if key in options}
    return read_csv_table(io.BytesIO(text), TableOptions(limits=DatasetLimits(**limits),
                                                         **options))


def test_a_later_value_widens_the_column_type_instead_of_failing():
    rows = b"".join(b"%d,c%d\n" % (i, i % 3) for i in range(300_000))   # several blocks
    table = read(b"n,label\n" + rows + b"4.5,c1\n")
    assert table.numeric[-1, 0] == 4.5 and table.schema.columns[0].kind == "numeric"
    worded = read(b"n,label\n" + rows + b"many,c1\n", max_categories=10)
    assert worded.schema.columns[0].kind == "categorical"
    assert "more than 10 distinct values" in worded.schema.columns[0].problem


def test_missing_values_and_column_kinds():
    table = read(b"x,town,when,label\n1.5,Oslo,2020-01-01,a\nNA,,2020-01-02,b\n?,Rome,,\n"
                 b"2,null,2020-01-03,a\n", target=["label"])
    x, town, when = table.schema.columns
    assert (x.kind, x.missing, x.min, x.max) == ("numeric", 1, 1.5, 2.0)  # after the drop
    assert (town.kind, town.missing, town.categories) == ("categorical", 2, ["Oslo", "Rome"])
    assert (when.kind, when.missing, when.earliest, when.latest) == (
        "date", 0, "2020-01-01", "2020-01-03")                       # after the drop
    assert when.features == ["year", "month", "weekday", "yearday"] and when.min == 18262.0
    assert table.schema.target.rows_dropped == 1 and table.schema.target.classes == ["a", "b"]
    assert table.numeric.shape == (3, 5) and np.isnan(table.numeric[1, 0])
    assert table.numeric[:, 1:].tolist() == [[2020, 1, 2, 1], [2020, 1, 3, 2], [2020, 1, 4, 3]]
    assert table.codes[:, 0].tolist() == [0, -1, -1] and table.y.tolist() == [0, 1, 0]


def test_declared_kinds_and_ignored_columns():
    table = read(b"zip,year,note,y\n0123,2007,a,1\n0456,2008,b,2\n", target=["y"],
                 kinds={"zip": "categorical", "year": "categorical"}, ignore=["note"])
    zip_code, year, note = table.schema.columns
    assert zip_code.categories == ["0123", "0456"] and zip_code.declared
    assert year.categories == ["2007", "2008"] and note.kind == "ignored"
    assert table.numeric.shape == (2, 0) and table.codes.shape == (2, 2)
    with pytest.raises(ApiError) as caught:
        read(b"a,y\n1,2\n", target=["y"], kinds={"a": "fancy"})
    assert caught.value.field == "columns" and "numeric, categorical, ignored" in caught.value.message


def test_id_and_free_text_columns_carry_the_fix():
    ids = b"".join(b"p%d,%d,%d\n" % (i, i % 7, i % 2) for i in range(50))
    column = read(b"name,v,y\n" + ids).schema.columns[0]
    assert "like an id" in column.problem and "ignore=name" in column.problem


def test_limits_are_413_before_the_data_are_held():
    with pytest.raises(ApiError) as caught:
        read(b"a,b\n" + b"1,2\n" * 50, max_rows=10)
    assert caught.value.status == 413 and "BACKPROP_MAX_DATASET_ROWS" in caught.value.message
    with pytest.raises(ApiError) as caught:
        read(b"a,b\n" + b"1,2\n" * 50, max_bytes=100)
    assert caught.value.status == 413 and "BACKPROP_MAX_DATASET_BYTES" in caught.value.message


def test_records_read_like_a_csv_of_the_same_values():
    records = [{"a": 1, "t": "x", "y": 0}, {"a": None, "t": "z", "y": 1}, {"t": "x", "y": 1}]
    table = read_records(records, TableOptions(target=["y"]))
    twin = read(b"a,t,y\n1,x,0\n,z,1\n,x,1\n", target=["y"])
    assert table.schema == twin.schema
    np.testing.assert_array_equal(table.numeric, twin.numeric)
    np.testing.assert_array_equal(table.codes, twin.codes)
    with pytest.raises(ApiError) as caught:
        read_records([{"a": [1]}], TableOptions())
    assert caught.value.field == "records[0].a"


def test_arrays_keep_their_values_and_labels():
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    table = table_from_arrays(X, np.array([0, 1, 1, 0], dtype=np.uint8), TableOptions())
    assert table.numeric.dtype == np.float32 and table.y.dtype == np.int64
    assert table.schema.target.classes == [0, 1]
    with pytest.raises(ApiError) as caught:
        table_from_arrays(X, np.array([0, 1, 1, 2**64 - 1], dtype=np.uint64), TableOptions())
    assert caught.value.field == "y" and "2**63" in caught.value.message


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_moments_match_numpy_and_survive_huge_values(dtype):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(3000, 4)) * [1, 100, 1e-3, 5] + [0, 2008, 0, -7]).astype(dtype)
    X[rng.random(X.shape) < 0.2] = np.nan
    rows = np.arange(0, 3000, 7)
    for moments, part in ((column_moments(X), X), (column_moments(X, rows), X[rows])):
        np.testing.assert_allclose(moments.mean, np.nanmean(part.astype(np.float64), axis=0),
                                   rtol=1e-9)
        np.testing.assert_allclose(moments.std, np.nanstd(part.astype(np.float64), axis=0),
                                   rtol=1e-6)
        assert moments.count.tolist() == (~np.isnan(part)).sum(axis=0).tolist()
    huge = column_moments(np.array([[1e300], [-1e300], [3e300]]))
    assert np.isclose(huge.std[0], np.std([1.0, -1.0, 3.0]) * 1e300)


def test_count_lines_skips_blank_lines_for_every_line_ending():
    for text, lines in ((b"a\nb\n", 2), (b"a\r\nb", 2), (b"a\rb\rc\r", 3), (b"\n\n\n", 0),
                        (b"a\n" + b"\n" * 1000 + b"b", 2)):
        assert count_lines(io.BytesIO(text)) == lines


def test_iso_text_in_records_is_a_date_unless_declared_categorical():
    rows = [{"d": "2024-01-31T13:45:00+01:00", "y": 1}, {"d": "2024-02-01", "y": 2}]
    when = read_records(rows, TableOptions()).schema.columns[0]
    assert (when.kind, when.earliest, when.features[-1]) == ("date", "2024-01-31T12:45:00",
                                                              "hour")
    kept = read_records(rows, TableOptions(kinds={"d": "categorical"})).schema.columns[0]
    assert kept.categories == ["2024-01-31T13:45:00+01:00", "2024-02-01"]
