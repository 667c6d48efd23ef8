"""Tables built to hurt the upload decoders (issue 22, items 4, 6, 9 and 11), sent over HTTP to
an API of its own: decode work is bounded by rows x columns before it is done, on every table
path, so each is a quick answer that costs the API little memory, never a 500."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.service.helpers import module_client, module_stack
from tests.service.hostile_helpers import peak_rss, refused

stack = module_stack("hostile-tables")
api = module_client()

GREW_MB = 100
"""Most the API may grow by over one of these uploads (before the fixes: 0.9 to 2.2 GB)."""


def parquet_bytes(table: pa.Table, **options) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    return buf.getvalue()


def upload_file(api: httpx.Client, name: str, content: bytes, **fields) -> httpx.Response:
    return api.post("/v1/datasets", files={"file": (name, content)}, data=fields)


# -- item 4: a Parquet dictionary bomb ---------------------------------------------------------
def test_a_parquet_dictionary_bomb_is_read_as_the_dictionary_it_is(stack, api):
    """A 20 KB text repeated in 40,000 rows, dictionary-encoded, written without the Arrow
    schema: about 600 bytes of file declaring 20 KB unpacked. Before: pyarrow expanded it to
    800 MB of text and the API grew by 2.2 GB; now the column is read as a dictionary."""
    rows = 40_000
    text = pa.array(["a" * 20_000]).take(pa.array(np.zeros(rows, np.int32)))
    bomb = parquet_bytes(pa.table({"t": text, "y": pa.array(np.arange(rows) % 2)}),
                         store_schema=False, compression="zstd")
    assert len(bomb) < 4096
    with peak_rss(stack.api.pid) as memory:
        answer = upload_file(api, "bomb.parquet", bomb)
    assert answer.status_code == 201, answer.text[:500]
    dataset = api.get(f"/v1/datasets/{answer.json()['id']}").json()
    assert dataset["n_samples"] == rows
    assert dataset["columns"][0]["categories"] == ["a" * 20_000]
    assert memory["grew"] < GREW_MB, memory


def test_parquet_text_read_as_dictionaries_keeps_its_values(api):
    """Dictionary-encoded, plain, and dictionary-typed text columns all read as written."""
    words = ["x", "y", None, "2007.0", "x"] * 20
    table = pa.table({"plain": pa.array(words), "typed": pa.array(words).dictionary_encode(),
                      "n": pa.array(np.arange(100.0)), "y": pa.array(np.arange(100) % 3)})
    for options in ({"use_dictionary": False}, {"store_schema": False}, {}):
        answer = upload_file(api, "t.parquet", parquet_bytes(table, **options))
        assert answer.status_code == 201, (options, answer.text[:500])
        columns = api.get(f"/v1/datasets/{answer.json()['id']}").json()["columns"]
        for column in columns[:2]:
            assert column["kind"] == "categorical" and column["missing"] == 20, column
            assert column["categories"] == ["2007", "x", "y"], column


# -- item 11: bytes that are not text, and records without columns -----------------------------
def non_utf8_parquet() -> bytes:
    raw = pa.array([b"\xff\xfe", b"ok", b"\xc3"] * 10, pa.binary()).dictionary_encode()
    return parquet_bytes(pa.table({"raw": raw, "x": pa.array(np.arange(30.0)),
                                   "y": pa.array(np.arange(30) % 2)}))


def test_a_dictionary_of_non_utf8_bytes_declared_categorical_is_422_naming_it(api):
    """Before: a 500 (the service's text rules met bytes)."""
    for kind in ("categorical", "numeric"):
        answer = upload_file(api, "b.parquet", non_utf8_parquet(),
                             columns=json.dumps({"raw": kind}))
        refused(answer, 422, "raw", "not UTF-8", "ignore=raw")


def test_a_dictionary_of_bytes_left_undeclared_is_ignored_with_the_reason(api):
    answer = upload_file(api, "b.parquet", non_utf8_parquet())
    assert answer.status_code == 201, answer.text[:500]
    raw = api.get(f"/v1/datasets/{answer.json()['id']}").json()["columns"][0]
    assert raw["kind"] == "ignored" and "binary" in raw["problem"], raw


@pytest.mark.parametrize("records", [[{}], [{}, {}, {}]])
def test_records_without_any_column_are_422(api, records):
    """Before: `{"name": "x", "records": [{}]}` was a 500."""
    answer = api.post("/v1/datasets", json={"name": "x", "records": records})
    refused(answer, 422, "records", "no columns")


# -- item 6: records with a key each ---------------------------------------------------------
def test_records_with_a_key_each_are_413_once_past_the_column_limit(stack, api):
    """139 KB of records, each with a key of its own. Before: 24 s and +1.26 GB in the API
    (a scan of every record per key); now the keys are counted first, a block of 1024
    records at a time, and refused past BACKPROP_MAX_DATASET_COLUMNS (5000 by default)."""
    records = [{f"k{i:05d}": 1} for i in range(10_000)]
    body = json.dumps({"name": "keys", "records": records}).encode()
    assert 130_000 < len(body) < 1 << 20    # decoded in the API's own decoder threads
    with peak_rss(stack.api.pid) as memory:
        answer = api.post("/v1/datasets", content=body,
                          headers={"Content-Type": "application/json"})
    refused(answer, 413, "records", "at least 5120 columns", "BACKPROP_MAX_DATASET_COLUMNS")
    assert memory["grew"] < GREW_MB, memory


def test_sparse_records_put_each_value_in_its_row(api):
    """Values given in some rows only: every other cell is missing, whatever the kind."""
    records = [{f"k{i}": float(i), "y": i % 2} for i in range(300)]
    records += [{"t": "a", "d": "2024-01-02", "y": 0}, {"t": "b", "y": 1}]
    answer = api.post("/v1/datasets", json={"records": records, "target": "y"})
    assert answer.status_code == 201, answer.text[:500]
    columns = {c["name"]: c for c in api.get(f"/v1/datasets/{answer.json()['id']}").json()[
        "columns"]}
    assert len(columns) == 302
    assert columns["k7"]["missing"] == 301 and columns["k7"]["mean"] == 7.0
    assert columns["t"]["categories"] == ["a", "b"] and columns["t"]["missing"] == 300
    assert columns["d"]["kind"] == "date" and columns["d"]["earliest"] == "2024-01-02"


# -- item 9: wide tables ---------------------------------------------------------------------
def wide_csv(columns: int, rows: int) -> bytes:
    rng = np.random.default_rng(0)
    header = ",".join(f"c{i}" for i in range(columns))
    lines = [",".join(map(str, rng.integers(0, 9, columns))) for _ in range(rows)]
    return "\n".join([header, *lines, ""]).encode()


def test_a_wide_csv_is_413_from_its_header_before_it_is_parsed(stack, api):
    """100,000 columns x 40 rows (8.7 MB). Before: 15 s, +919 MB in the API."""
    content = wide_csv(100_000, 40)
    with peak_rss(stack.api.pid) as memory:
        answer = upload_file(api, "wide.csv", content)
    refused(answer, 413, "file", "100000 columns", "BACKPROP_MAX_DATASET_COLUMNS")
    assert memory["grew"] < GREW_MB, memory


def test_a_header_with_quoted_commas_counts_its_fields_not_its_commas(api):
    header = ",".join(f'"c,{i}"' for i in range(3000))
    rows = "\n".join(",".join(["1"] * 3000) for _ in range(3))
    answer = upload_file(api, "quoted.csv", f"{header}\n{rows}\n".encode())
    assert answer.status_code == 201, answer.text[:500]


@pytest.mark.parametrize("columns,words", [(5001, "5001 columns"),
                                           (40_000, "footer lists more columns"),
                                           (100_000, "footer (its metadata) takes")])
def test_a_wide_parquet_file_is_413_from_its_footer(stack, api, columns, words):
    """100,000 columns: before, the footer alone took the API 365 MB to decode; now a footer
    over 16 MiB is refused from its length, and decoding one stops at about twice the column
    limit's items."""
    table = pa.table({f"c{i}": pa.array(np.zeros(4)) for i in range(columns)})
    with peak_rss(stack.api.pid) as memory:
        answer = upload_file(api, "wide.parquet", parquet_bytes(table))
    refused(answer, 413, "file", words, "BACKPROP_MAX_DATASET_COLUMNS")
    assert memory["grew"] < GREW_MB, memory


def test_listing_datasets_reads_no_schema(api):
    """Before: each listed dataset carried every column's schema (100,000 of them stalled a
    listing for 1.4 s); the list now shows counts, and one dataset's read its columns."""
    answer = upload_file(api, "w.csv", wide_csv(4000, 5))
    assert answer.status_code == 201, answer.text[:500]
    listed = api.get("/v1/datasets", params={"limit": 1})
    assert listed.status_code == 200 and len(listed.content) < 2000, len(listed.content)
    entry = listed.json()["datasets"][0]
    assert entry["id"] == answer.json()["id"] and entry["n_features"] == 3999
    assert "columns" not in entry and "target" not in entry
    one = api.get(f"/v1/datasets/{entry['id']}").json()
    assert len(one["columns"]) == 3999 and one["target"]["names"] == ["c3999"]
    assert {k: v for k, v in one.items() if k in entry} == entry
