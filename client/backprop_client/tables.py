"""Tables as the API takes them: a pandas DataFrame as a CSV upload or as JSON records for
predict, and a CSV file cut into predict-sized bodies. pandas is optional: a DataFrame can only
exist where the caller has imported pandas, so it is looked up, never imported, here."""

from __future__ import annotations

import csv
import datetime
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def is_dataframe(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def dataframe_csv(frame) -> bytes:
    """A DataFrame as CSV with a header row; NaN/None/NA/NaT become empty cells (missing);
    datetime64 columns are ISO 8601 text (dates alone when every time is midnight), which the
    service reads as date columns."""
    return frame.to_csv(index=False).encode("utf-8")


def table_form(target: str | list[str] | None, ignore: str | list[str] | None,
               columns: dict[str, str] | None) -> dict[str, str]:
    """The upload's form fields that describe a table: target and ignore comma-separated,
    columns (kind overrides such as {"year": "categorical"}) as a JSON object."""
    form = {}
    for key, names in (("target", target), ("ignore", ignore)):
        if names:
            form[key] = names if isinstance(names, str) else ",".join(names)
    if columns:
        form["columns"] = json.dumps(columns)
    return form


def plain(value: Any) -> Any:
    """A cell as JSON takes it: NumPy scalars as Python ones, NaN and NaT as None (null =
    missing), dates and datetimes (pandas Timestamps, datetime64) as ISO 8601 text, with their
    UTC offset when they have a time zone (the service converts to UTC)."""
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(np.datetime_as_string(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return value


def records(data: Any) -> list[dict] | None:
    """Rows as JSON records ({column: value}) when `data` is a table (a DataFrame, a list of
    dicts, or one dict); None when it is an array, which is sent as numbers instead."""
    if is_dataframe(data):
        data = data.astype(object).where(data.notna(), None).to_dict("records")
    elif isinstance(data, dict):
        data = [data]
    elif not (isinstance(data, (list, tuple)) and data and all(isinstance(r, dict) for r in data)):
        return None
    return [{str(k): plain(v) for k, v in row.items()} for row in data]


def records_bodies(rows: list[dict], max_bytes: int, max_rows: int) -> Iterator[bytes]:
    """{"inputs": [...]} JSON bodies of at most `max_rows` records and about `max_bytes`
    (a missing value is null; other values JSON cannot hold, such as dates, go as text)."""
    encoded = [json.dumps(row, allow_nan=False, default=str) for row in rows]
    start = 0
    while True:
        end, size = start, 0
        while end < len(encoded) and end - start < max_rows and (
                end == start or size + len(encoded[end]) < max_bytes):
            size += len(encoded[end]) + 1
            end += 1
        yield ('{"inputs": [' + ",".join(encoded[start:end]) + "]}").encode("utf-8")
        if end >= len(encoded):
            return
        start = end


def csv_bodies(path: Path, max_bytes: int, max_rows: int) -> Iterator[tuple[bytes, int]]:
    """(CSV body, rows) pieces of a CSV file, each with the header row, at most `max_rows` rows
    and about `max_bytes`: a file of any size fits the service's per-request limits. The csv
    module cuts at row ends, so quoted cells holding commas or newlines stay whole."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; it needs a header row and data rows")
        buf, rows, sent = io.StringIO(), 0, False
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        start = buf.tell()
        for row in reader:
            writer.writerow(row)
            rows += 1
            if rows >= max_rows or buf.tell() >= max_bytes:
                yield buf.getvalue().encode("utf-8"), rows
                buf.seek(start)
                buf.truncate()
                rows, sent = 0, True
        if rows or not sent:  # a header-only file still asks once: the service says what fits
            yield buf.getvalue().encode("utf-8"), rows
