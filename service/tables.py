"""Tables in: CSV and Parquet files (pyarrow's readers, typed and null-aware), JSON records, and
X/y arrays, each turned into a dataset's stored arrays and schema (service/table_builder.py).

Empty cells, NA, N/A, NaN, null and ? are missing values. Column kinds come from the values'
types (numbers: numeric; text: categorical; dates and timestamps, ISO 8601 text included:
date, whose calendar features the table stores) unless declared at upload
(`columns={"year": "categorical"}`).
"""

from __future__ import annotations

import re
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.dataset_schema import arrays_schema, numeric_targets
from service import cells
from service.arrays import as_float
from service.errors import invalid
from service.table_builder import Table, TableBuilder, TableOptions

NULL_VALUES = list(cells.MISSING_WORDS)
CSV_BLOCK_BYTES = 4 << 20
"""Bytes of CSV parsed at a time; the longest row the reader accepts."""
PARQUET_COLUMNS = 32
"""Columns of a Parquet row group decoded at a time."""
COUNT_BLOCK = 1 << 20
CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\w+)")
WIDER = {"null": pa.float64(), "int64": pa.float64(), "double": pa.string(),
         "date32": pa.timestamp("s")}
"""A column whose first block looked like the key but a later value does not is read again
as the value type: whole numbers, then any numbers, then text; dates, then dates with times."""
DECLARED_TYPES = {"categorical": pa.string()}
"""Column types a declared kind forces on the CSV reader. A declared numeric column is read as
it comes (numbers, booleans, dates, or numeric text) and made numbers by service.cells."""


# -- CSV -------------------------------------------------------------------------------------
def released(read):
    """read(...), then the memory pyarrow's allocator kept for reuse handed back to the system:
    an upload's parsing buffers should not stay with the API process after it."""
    def reading(*args, **kwargs):
        try:
            return read(*args, **kwargs)
        finally:
            pa.default_memory_pool().release_unused()
    return reading


@released
def read_csv_table(file: BinaryIO, options: TableOptions) -> Table:
    """A CSV file with a header row (the spooled upload, read from disk in blocks)."""
    capacity = max(count_lines(file) - 1, 0)
    forced: dict[str, pa.DataType] = {}
    for _ in range(64):  # each pass widens one column's type; a table has few such columns
        file.seek(0)
        try:
            # Closed before any retry: its read-ahead must not share the file with the next.
            with pacsv.open_csv(file, read_options=pacsv.ReadOptions(
                    block_size=CSV_BLOCK_BYTES), parse_options=pacsv.ParseOptions(
                    newlines_in_values=True), convert_options=pacsv.ConvertOptions(
                    null_values=NULL_VALUES, strings_can_be_null=True,
                    column_types={**forced, **{name: DECLARED_TYPES[kind] for name, kind in
                                               options.kinds.items()
                                               if kind in DECLARED_TYPES}})) as reader:
                names = reader.schema.names
                binary = [n for n, t in zip(names, reader.schema.types)
                          if pa.types.is_binary(t)]
                if binary:
                    raise invalid("file", f"column {binary[0]!r} is not UTF-8 text; save the "
                                          f"file as UTF-8")
                builder = TableBuilder(names, reader.schema.types, options, capacity)
                for batch in reader:
                    builder.add(batch)
                return builder.finish()
        except UnicodeDecodeError:
            raise invalid("file", "is not UTF-8 text; save the CSV as UTF-8, or upload Parquet "
                                  "or NPZ") from None
        except pa.ArrowException as exc:
            wider = widened(str(exc), names if "names" in locals() else [], forced)
            if wider is None:
                raise invalid("file", csv_problem(str(exc))) from None
            forced.update(wider)
    raise invalid("file", "column types kept changing while reading; declare the kinds of "
                          "mixed columns (columns={...})")


def widened(message: str, names: list[str],
            forced: dict[str, pa.DataType]) -> dict[str, pa.DataType] | None:
    """{column: wider type} for a conversion error in a later block, or None."""
    found = CONVERSION_ERROR.search(message)
    if found is None or int(found[1]) >= len(names):
        return None
    name, failed = names[int(found[1])], found[2]
    wider = WIDER.get(failed, pa.string())
    if forced.get(name) == wider or failed == "string":
        return None
    return {name: wider}


def csv_problem(message: str) -> str:
    """pyarrow's parse error, said as what to fix."""
    if "straddling" in message:
        return (f"has a row longer than {CSV_BLOCK_BYTES >> 20} MiB (or an unbalanced quote "
                f"that makes one); check the file's quoting")
    if "Empty CSV file" in message:
        return "is empty; the CSV needs a header row and data rows"
    first = message.splitlines()[0] if message else "unreadable"
    return f"is not a well-formed CSV file ({first[:300]})"


def count_lines(file: BinaryIO) -> int:
    """Lines that hold something (blank lines do not count), for \\n, \\r\\n or \\r line
    endings: an upper bound of the header and data rows. Leaves the file at its start."""
    file.seek(0)
    lines, previous_is_text = 0, False
    while block := file.read(COUNT_BLOCK):
        ends = np.frombuffer(block, dtype=np.uint8)
        ends = (ends == 10) | (ends == 13)
        # a line ends where text is followed by a line break
        lines += int(np.count_nonzero(~ends[:-1] & ends[1:]))
        lines += int(previous_is_text and ends[0])
        previous_is_text = not ends[-1]
    file.seek(0)
    return lines + previous_is_text


# -- Parquet ---------------------------------------------------------------------------------
@released
def read_parquet_table(file: BinaryIO, options: TableOptions) -> Table:
    """A Parquet file, a batch of rows at a time; its declared sizes are checked first."""
    try:
        parquet = pq.ParquetFile(file)
        metadata = parquet.metadata
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise invalid("file", f"is not a readable Parquet file ({exc})") from None
    unpacked = sum(metadata.row_group(g).column(c).total_uncompressed_size
                   for g in range(metadata.num_row_groups)
                   for c in range(metadata.num_columns))
    max_bytes = options.limits.max_bytes
    if unpacked > 4 * max_bytes:
        raise invalid("file", f"the Parquet file unpacks to {unpacked} bytes; this service "
                              f"takes at most {4 * max_bytes} (4 x "
                              f"BACKPROP_MAX_DATASET_BYTES) before conversion", 413)
    builder = TableBuilder(schema.names, schema.types, options, metadata.num_rows)
    used = [i for i, plan in enumerate(builder.plans) if plan.role != "ignored"]
    try:
        for group in range(metadata.num_row_groups):
            n = metadata.row_group(group).num_rows
            start = builder.reserve(n)
            # A row group decodes whole unless read a few columns at a time: a 60000-row
            # group of 785 float columns held 376 MB as one piece.
            for first in range(0, len(used), PARQUET_COLUMNS):
                indices = used[first:first + PARQUET_COLUMNS]
                part = parquet.read_row_group(group, columns=[schema.names[i] for i in indices])
                builder.put(start, n, dict(zip(indices, part.columns)))
    except (pa.ArrowException, OSError) as exc:
        raise invalid("file", f"is not a readable Parquet file ({exc})") from None
    return builder.finish()


# -- JSON records ----------------------------------------------------------------------------
def read_records(records, options: TableOptions, field_name: str = "records") -> Table:
    """A list of JSON objects, one per row; a key missing from a row is a missing value."""
    if not isinstance(records, list) or not records:
        raise invalid(field_name, "must be a non-empty list of objects, one per row")
    options.limits.admit(len(records), field=field_name)
    names: dict[str, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise invalid(f"{field_name}[{i}]", "must be an object {\"column\": value, ...}")
        names.update(dict.fromkeys(record))
    arrays = [record_column(records, name, field_name,
                            dates=options.kinds.get(name) != "categorical") for name in names]
    batch = pa.RecordBatch.from_arrays(arrays, names=list(names))
    builder = TableBuilder(list(names), [a.type for a in arrays], options, len(records))
    builder.add(batch)
    return builder.finish()


def record_column(records: list[dict], name: str, field_name: str,
                  dates: bool = True) -> pa.Array:
    """One column of records: numbers if every present value is a number or a boolean, dates
    if every one is ISO 8601 date text (unless `dates` is False: a column declared
    categorical keeps its text as written), else text (service.cells' canonical categories)."""
    values = [record.get(name) for record in records]
    for i, value in enumerate(values):
        if isinstance(value, (dict, list)):
            raise invalid(f"{field_name}[{i}].{name}", "must be a number, a string or null")
    present = [v for v in values if not cells.is_missing(v)]
    if all(isinstance(v, (int, float)) for v in present):
        return pa.array([cells.number(v, name) for v in values], type=pa.float64())
    dates = cells.date_text_array(pa.array([v if isinstance(v, str) else None
                                            for v in values], pa.string())) \
        if dates and all(isinstance(v, str) for v in present) else None
    if dates is not None:
        return dates
    return pa.array([cells.category_text(v, name) for v in values], type=pa.string())


# -- X and y arrays --------------------------------------------------------------------------
def table_from_arrays(X: np.ndarray, y: np.ndarray, options: TableOptions,
                      x_field: str = "X", y_field: str = "y") -> Table:
    """NPZ or JSON X (n, d) and y: d numeric columns x0..x{d-1}. X is cast to the stored
    dtype without a second copy."""
    options.limits.admit(X.shape[0], X.size * np.dtype(options.dtype).itemsize + y.size * 8,
                         x_field)
    if y.dtype.kind == "u" and y.size and y.max() > np.iinfo(np.int64).max:
        raise invalid(y_field, f"holds {y.max()}, beyond the int64 labels this service stores; "
                               f"use labels below 2**63")
    numeric = as_float(X, x_field, options.dtype)
    if y.dtype.kind in "iub":
        y = y.astype(np.int64)
    else:
        y = numeric_targets(y.reshape(len(y), -1).astype(np.float64))
    codes = np.empty((len(y), 0), dtype=np.int32)
    return Table(numeric, codes, y, arrays_schema(numeric, y, options.limits.max_categories))
