"""JSON arrays of numbers read straight into NumPy, with no Python object per number.

orjson makes a Python float of every number and NumPy then reads them back: for 64 rows of 784
numbers that is most of a predict's work (orjson 2.5 ms, the list to an array 1.2-1.7 ms, and
freeing the floats, against 1.6 ms for simdjson's parse and copy; bench/service.py). simdjson
(pysimdjson) parses in C and copies an array's numbers into one buffer of doubles. Predict
bodies try it first; whatever it does not read exactly as the general path would (NaN,
Infinity, numbers beyond float64, strings, booleans, rows of unequal length, other fields)
returns None, and the caller reads the body with orjson, whose errors name what is wrong.
"""

from __future__ import annotations

import numpy as np
import orjson
import simdjson


def _document(body: bytes):
    """The parsed body, or None where simdjson refuses it. A fresh parser each time: a parser
    cannot parse again while anything it returned is alive, and threads share nothing here."""
    try:
        return simdjson.Parser().parse(body)
    # Invalid JSON, or numbers it does not read (NaN, 1e400: ValueError; integers of over 64
    # bits: RuntimeError's BIGINT_ERROR).
    except (ValueError, TypeError, RuntimeError):
        return None


def _brackets(body: bytes) -> int:
    """How many `[` bytes the body holds: NumPy counts a MiB in about 0.1 ms, bytes.count in
    0.3 ms (5% of a 64-row predict)."""
    return int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == ord("[")))


def _values(array: simdjson.Array, count: int) -> np.ndarray | None:
    """The `count` numbers of `array` (and of the arrays nested in it), float64, in order."""
    try:
        values = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):  # a string, boolean, null, object among them
        return None
    return values if values.size == count else None


def number_rows(body: bytes, field: str) -> np.ndarray | None:
    """`{field: [[number, ...], ...]}`, that field alone, as float64 (rows, width), rows of
    equal non-zero width; else None."""
    if body.find(b"{", body.find(b"{") + 1) != -1:   # records ({column: value} rows) and the
        return None                                   # like: not parsed twice
    document = _document(body)
    if not isinstance(document, simdjson.Object) or list(document.keys()) != [field]:
        return None
    rows = document[field]
    if not isinstance(rows, simdjson.Array) or len(rows) == 0:
        return None
    widths = set()
    for row in rows:
        if not isinstance(row, simdjson.Array):
            return None
        widths.add(len(row))
    if len(widths) != 1 or 0 in widths:
        return None
    width = widths.pop()
    # The buffer flattens any nesting: [1, [2]] would count as two numbers. The body holds no
    # string but the field's name, so its brackets are the rows' and the list's alone.
    if _brackets(body) != len(rows) + 1:
        return None
    values = _values(rows, len(rows) * width)
    return None if values is None else values.reshape(len(rows), width)


def _python(value):
    """A parsed value as Python objects (dicts, lists, scalars)."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def inference_request(body: bytes) -> dict | None:
    """An Open Inference Protocol request as Python objects, with each input's `data` that is
    a flat array of numbers as a float64 array (other `data`, text, stay lists); else None."""
    if b"\\" in body:    # no escapes: each string's brackets are then its bytes' (see below)
        return None
    document = _document(body)
    if not isinstance(document, simdjson.Object) or \
            not isinstance(document.get("inputs"), simdjson.Array):
        return None
    request = {key: _python(document[key]) for key in document.keys() if key != "inputs"}
    inputs, as_written = [], []
    for tensor in document["inputs"]:
        if not isinstance(tensor, simdjson.Object):
            return None
        fields = {key: _python(tensor[key]) for key in tensor.keys() if key != "data"}
        as_written.append(fields)
        if "data" in tensor.keys():
            data = tensor["data"]
            values = _values(data, len(data)) if isinstance(data, simdjson.Array) else None
            as_written[-1] = {**fields, "data": [] if values is not None else _python(data)}
            fields = {**fields, "data": _python(data) if values is None else values}
        inputs.append(fields)
    request["inputs"] = inputs
    # The buffer flattens any nesting ([1, [2]] would count as two numbers): the body's
    # brackets must be exactly those of the request written out with those arrays empty.
    written = orjson.dumps({**request, "inputs": as_written})
    return request if _brackets(body) == written.count(b"[") else None
