"""Tables in: CSV and Parquet files (pyarrow's readers, typed and null-aware), JSON records, and
X/y arrays, each turned into a dataset's stored arrays and schema (service/table_builder.py).

Empty cells, NA, N/A, NaN, null and ? are missing values. Column kinds come from the values'
types (numbers: numeric; text: categorical; dates and timestamps, ISO 8601 text included:
date, whose calendar features the table stores) unless declared at upload
(`columns={"year": "categorical"}`).
"""

from __future__ import annotations

import csv
import io
import itertools
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
BATCH_VALUES = 1 << 20
"""Values (rows x columns) of a Parquet row group decoded at a time (at least one column)."""
FOOTER_BYTES = 16 << 20
"""The largest Parquet footer read (and the longest text in it): 16 MiB holds the metadata of
5000 columns in 25 row groups (about 110 bytes a column chunk, statistics included)."""
COUNT_BLOCK = 1 << 20
KEY_BLOCK = 1024
"""JSON records whose keys are collected before the count is checked again."""
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
    # Counted before pyarrow reads a block: its type inference on 100,000 columns took 8 s
    # and 900 MB for 40 rows.
    options.limits.admit_columns(header_width(file))
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


def header_width(file: BinaryIO) -> int:
    """Fields in the CSV's header row, from its first line (at most CSV_BLOCK_BYTES): its
    commas counted in C, or where it quotes, its fields read with Python's csv module; 0 when
    it cannot tell (the reader then says what is wrong). Leaves the file at its start."""
    file.seek(0)
    line = file.readline(CSV_BLOCK_BYTES)
    file.seek(0)
    line = line.split(b"\r", 1)[0].rstrip(b"\n")
    if b'"' not in line:
        return line.count(b",") + 1
    try:
        return len(next(csv.reader([line.decode("utf-8", errors="replace")]), []))
    except csv.Error:
        return 0


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
    """A Parquet file, a row group's columns a few at a time.

    Its metadata can lie, and a dictionary-encoded column of a file written without the Arrow
    schema decodes to one full copy of its value per row (793 bytes held 800 MB of one
    repeated text): text columns are read as dictionaries (each distinct value once), and the
    bytes actually decoded are counted against DatasetLimits.decode_budget as they come."""
    limits = options.limits
    check_footer_size(file)
    try:
        # A footer listing more than about the column limit fails as it is decoded (100,000
        # columns took 0.4 s and 365 MB to decode whole).
        metadata = pq.ParquetFile(file, thrift_string_size_limit=FOOTER_BYTES,
                                  thrift_container_size_limit=2 * limits.max_columns + 8).metadata
        limits.admit_columns(metadata.num_columns)
        text = [metadata.schema.column(i).path for i in range(metadata.num_columns)
                if metadata.schema.column(i).physical_type == "BYTE_ARRAY"]
        parquet = pq.ParquetFile(file, metadata=metadata, read_dictionary=text)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        if "Exceeded size limit" in str(exc):
            raise invalid("file", f"the Parquet file's footer lists more columns or row groups "
                                  f"than this service reads; it takes at most "
                                  f"{limits.max_columns} columns (BACKPROP_MAX_DATASET_COLUMNS) "
                                  f"and as many row groups", 413) from None
        raise invalid("file", f"is not a readable Parquet file ({exc})") from None
    declared = sum(metadata.row_group(g).column(c).total_uncompressed_size
                   for g in range(metadata.num_row_groups)
                   for c in range(metadata.num_columns))
    if declared > limits.decode_budget:    # a cheap first refusal; the decoding counts too
        raise too_big(f"declares {declared} bytes unpacked", limits)
    builder = TableBuilder(schema.names, schema.types, options, metadata.num_rows)
    used = [i for i, plan in enumerate(builder.plans) if plan.role != "ignored"]
    decoded = 0
    try:
        for group in range(metadata.num_row_groups):
            n = metadata.row_group(group).num_rows
            start = builder.reserve(n)
            # A few columns of a row group at a time, about BATCH_VALUES values (a 60000-row
            # group of 785 float columns held 376 MB read whole). Whole column chunks, not
            # batches of rows: each batch would carry its own copy of a text dictionary.
            step = max(1, BATCH_VALUES // max(n, 1))
            for first in range(0, len(used), step):
                indices = used[first:first + step]
                part = parquet.read_row_group(group, columns=[schema.names[i] for i in indices])
                decoded += part.get_total_buffer_size()
                if decoded > limits.decode_budget:
                    raise too_big(f"decodes to more than {decoded} bytes", limits)
                if part.num_rows != n:
                    raise invalid("file", f"row group {group} holds {part.num_rows} rows where "
                                          f"the file's metadata says {n}; write the file again")
                builder.put(start, n, dict(zip(indices, part.columns)))
    except (pa.ArrowException, OSError) as exc:
        raise invalid("file", f"is not a readable Parquet file ({exc})") from None
    return builder.finish()


def check_footer_size(file: BinaryIO) -> None:
    """413 for a Parquet footer (its metadata, decoded whole before anything else) over
    FOOTER_BYTES, from the length the file's last 8 bytes give. Leaves the file at its start."""
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(max(size - 8, 0))
    tail = file.read(8)
    file.seek(0)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] == b"PAR1" and length > FOOTER_BYTES:
        raise invalid("file", f"the Parquet file's footer (its metadata) takes {length} bytes; "
                              f"this service reads at most {FOOTER_BYTES}: write it with fewer "
                              f"columns (BACKPROP_MAX_DATASET_COLUMNS) or fewer, larger row "
                              f"groups", 413)


def too_big(what: str, limits) -> Exception:
    return invalid("file", f"the Parquet file {what}; this service decodes at most "
                           f"{limits.decode_budget} (4 x BACKPROP_MAX_DATASET_BYTES)", 413)


# -- JSON records ----------------------------------------------------------------------------
def read_records(records, options: TableOptions, field_name: str = "records") -> Table:
    """A list of JSON objects, one per row; a key missing from a row is a missing value.

    Linear in the records' size: the keys are counted first (past BACKPROP_MAX_DATASET_COLUMNS:
    413), then each column keeps the rows and values where it is present (a scan per column
    over every record took 24 s for 139 KB of records, each with a key of its own)."""
    if not isinstance(records, list) or not records:
        raise invalid(field_name, "must be a non-empty list of objects, one per row")
    limits = options.limits
    limits.admit(len(records), field=field_name)
    if not all(map(isinstance, records, itertools.repeat(dict))):   # in C, as the keys below
        i = next(i for i, record in enumerate(records) if not isinstance(record, dict))
        raise invalid(f"{field_name}[{i}]", "must be an object {\"column\": value, ...}")
    # Every key once, in order of appearance, collected in C a block of records at a time and
    # counted after each block, before any per-column work.
    found: dict[str, None] = {}
    for start in range(0, len(records), KEY_BLOCK):
        found.update(dict.fromkeys(itertools.chain.from_iterable(
            records[start:start + KEY_BLOCK])))
        limits.admit_columns(len(found), field_name)
    names = list(found)
    if not names:
        raise invalid(field_name, "holds no columns: every record is empty; give each row its "
                                  "values, {\"column\": value, ...}")
    # The columns are made whole (rows x columns) next: sized before they are.
    limits.admit(len(records), len(records) * len(names) * np.dtype(options.dtype).itemsize,
                 field_name)
    present: dict[str, tuple[list[int], list]] = {name: ([], []) for name in names}
    for i, record in enumerate(records):
        for name, value in record.items():
            column = present[name]
            column[0].append(i)
            column[1].append(value)
    arrays = [record_column(len(records), *present.pop(name), name, field_name,
                            dates=options.kinds.get(name) != "categorical") for name in names]
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    builder = TableBuilder(names, [a.type for a in arrays], options, len(records))
    builder.add(batch)
    return builder.finish()


def record_column(n: int, rows: list[int], values: list, name: str, field_name: str,
                  dates: bool = True) -> pa.Array:
    """One column of n records from the rows where it is present and their values: numbers if
    every present value is a number or a boolean, dates if every one is ISO 8601 date text
    (unless `dates` is False: a column declared categorical keeps its text as written), else
    text (service.cells' canonical categories). Python touches only the present values."""
    for i, value in zip(rows, values):
        if isinstance(value, (dict, list)):
            raise invalid(f"{field_name}[{i}].{name}", "must be a number, a string or null")
    given = [v for v in values if not cells.is_missing(v)]
    if all(isinstance(v, (int, float)) for v in given):
        numbers = np.full(n, np.nan)
        numbers[rows] = [cells.number(v, name) for v in values]
        return pa.array(numbers, type=pa.float64())
    # Row r takes value positions[r]; a row without the key a null.
    positions = np.full(n, -1, dtype=np.int64)
    positions[rows] = np.arange(len(rows))
    spread = pa.array(positions, pa.int64(), mask=positions < 0)
    read = cells.date_text_array(pa.array([v if isinstance(v, str) else None for v in values],
                                          pa.string())) \
        if dates and all(isinstance(v, str) for v in given) else None
    if read is None:
        read = pa.array([cells.category_text(v, name) for v in values], type=pa.string())
    return read.take(spread)


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
