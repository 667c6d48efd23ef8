"""service/json_numbers.py: predict bodies' numbers read by simdjson into arrays, and every
body it does not read exactly as orjson would left to the general path (None)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from service import json_numbers


def test_rows_of_numbers_are_read_as_orjson_reads_them():
    rows = np.random.default_rng(0).standard_normal((64, 784)).astype(np.float32).tolist()
    rows[0][:3] = [1, -2, 3.5e-12]                      # integers and exponents too
    body = orjson.dumps({"inputs": rows})
    read = json_numbers.number_rows(body, "inputs")
    assert read.dtype == np.float64 and read.shape == (64, 784)
    np.testing.assert_array_equal(read, np.asarray(orjson.loads(body)["inputs"]))
    spaced = b'{ "inputs" : [ [1, 2] ,\n [3 , 4] ] }'
    np.testing.assert_array_equal(json_numbers.number_rows(spaced, "inputs"), [[1, 2], [3, 4]])


@pytest.mark.parametrize("body", [
    b'{"inputs": [[1, [2]], [3, 4]]}',       # nesting the buffer would flatten
    b'{"inputs": [[[1, 2]], [[3, 4]]]}',
    b'{"inputs": [[1, 2], [3]]}',            # rows of unequal length
    b'{"inputs": [[1, 2], [3, 4, 5], [6]]}',  # ... whose numbers would fill 3 x 2
    b'{"inputs": [[], []]}',
    b'{"inputs": []}',
    b'{"inputs": [1, 2]}',
    b'{"inputs": [[1, "2"]]}',
    b'{"inputs": [[1, true]]}',
    b'{"inputs": [[1, null]]}',
    b'{"inputs": [[1, {}]]}',
    b'{"inputs": [[NaN, 1]]}',
    b'{"inputs": [[Infinity, 1]]}',
    b'{"inputs": [[1e400, 1]]}',
    b'{"inputs": [[18446744073709551616, 1]]}',
    b'{"inputs": [[1%s, 1]]}' % (b"0" * 400),   # an integer of 401 digits
    b'{"inputs": [[1, 2]], "extra": 1}',
    b'{"inputs": [{"a": 1, "b": 2}]}',       # records, for a model with a preparation
    b'{"rows": [[1, 2]]}',
    b'[[1, 2]]',
    b'{"inputs": [[1, 2]]',
    b'',
])
def test_anything_else_is_left_to_the_general_path(body):
    assert json_numbers.number_rows(body, "inputs") is None


def oip(data, **extra) -> dict:
    return {"inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": data}],
            **extra}


def test_a_tensors_flat_data_is_an_array_and_the_rest_is_as_orjson_reads_it():
    request = oip([1, 2.5, -3, 4e-3], id="a [bracketed] id", outputs=[{"name": "label"}],
                  parameters={"p": [1, [2]]})
    read = json_numbers.inference_request(orjson.dumps(request))
    data = read["inputs"][0].pop("data")
    assert isinstance(data, np.ndarray) and data.dtype == np.float64
    np.testing.assert_array_equal(data, [1, 2.5, -3, 4e-3])
    request["inputs"][0].pop("data")
    assert read == request


@pytest.mark.parametrize("data", [[[1, 2], [3, 4]], ["a", "b", "c", "d"]],
                         ids=["nested-rows", "text"])
def test_other_data_stays_lists(data):
    read = json_numbers.inference_request(orjson.dumps(oip(data)))
    assert read == oip(data)


@pytest.mark.parametrize("body", [
    orjson.dumps(oip([1, [2], 3])),            # nesting the buffer would flatten
    orjson.dumps(oip([[], [1, 2]])),
    orjson.dumps(oip([1, 2, 3, 4], id="\\u005b")).replace(b"\\\\u", b"\\u"),  # escapes
    b'{"inputs": [{"name": "input", "data": [NaN, 1]}]}',
    b'{"inputs": [{"name": "input", "data": [1%s, 1]}]}' % (b"0" * 400),
    b'{"inputs": {"name": "input"}}',
    b'{"inputs": ["x"]}',
    b'[1, 2]',
    b'{"inputs": [',
])
def test_requests_it_cannot_read_exactly_are_left_to_the_general_path(body):
    assert json_numbers.inference_request(body) is None
