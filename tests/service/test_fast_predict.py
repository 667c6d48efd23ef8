"""The fast predict path (service/fast_predict.py) against the FastAPI route it stands in for.

Real HTTP to the session stack. Which of the two answered is read from the API's own counter
backprop_predict_fast_path_total{outcome=answered|handed_on} on /metrics.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.service.helpers import blobs, classifier, npy_bytes, trained_records
from tests.service.test_metrics import log_lines, scrape, value

JSON = {"content-type": "application/json"}


def outcomes(api) -> dict[str, float]:
    samples = scrape(api)
    return {o: value(samples, "backprop_predict_fast_path_total", outcome=o)
            for o in ("answered", "handed_on")}


def moved(before: dict, after: dict) -> dict:
    return {o: after[o] - before[o] for o in before}


@pytest.fixture(scope="module")
def model(stack) -> dict:
    """A 4-input classifier the API has not loaded yet, and rows to predict."""
    import httpx

    X, y = blobs(n=90, features=4, seed=7)
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        records = trained_records(api, X, y, classifier(hidden=8))
    return {"id": records["model_id"], "rows": X[:3].tolist()}


def test_the_first_predict_loads_the_model_and_the_next_takes_the_fast_path(api, model):
    url, body = f"/v1/models/{model['id']}/predict", {"inputs": model["rows"]}
    before = outcomes(api)
    by_route = api.post(url, json=body)
    middle = outcomes(api)
    fast = api.post(url, json=body)
    after = outcomes(api)
    assert moved(before, middle) == {"answered": 0, "handed_on": 1}   # not loaded: the route
    assert moved(middle, after) == {"answered": 1, "handed_on": 0}
    assert by_route.status_code == fast.status_code == 200
    assert fast.content == by_route.content                              # byte for byte
    assert fast.headers["content-type"] == by_route.headers["content-type"]
    assert fast.headers["content-length"] == by_route.headers["content-length"]
    answer = fast.json()
    assert answer["model_id"] == model["id"] and len(answer["outputs"]) == 3
    assert answer["labels"] == np.argmax(answer["outputs"], axis=1).tolist()


def test_a_chunked_body_and_a_charset_take_the_fast_path_too(api, model):
    url = f"/v1/models/{model['id']}/predict"
    api.post(url, json={"inputs": model["rows"]})                        # loaded
    payload = ('{"inputs": %s}' % model["rows"]).encode()
    reference = api.post(url, content=payload, headers=JSON)
    before = outcomes(api)
    chunked = api.post(url, content=iter([payload[:7], payload[7:20], payload[20:]]),
                       headers={"content-type": "application/json; charset=utf-8"})
    assert "content-length" not in chunked.request.headers              # really chunked
    assert moved(before, outcomes(api)) == {"answered": 1, "handed_on": 0}
    assert chunked.status_code == 200 and chunked.content == reference.content


def test_npy_bodies_and_answers_take_the_fast_path_too(api):
    X, y = blobs(n=60, features=4, seed=5)
    model_id = trained_records(api, X, y, classifier(hidden=4))["model_id"]
    url, rows = f"/v1/models/{model_id}/predict", X[:4].astype(np.float32)
    npy = {"content-type": "application/x-npy", "accept": "application/x-npy"}
    before = outcomes(api)
    by_route = api.post(url, content=npy_bytes(rows), headers=npy)
    middle = outcomes(api)
    fast = api.post(url, content=npy_bytes(rows), headers=npy)
    json_in = api.post(url, json={"inputs": rows.tolist()}, headers={"accept": npy["accept"]})
    assert moved(before, middle) == {"answered": 0, "handed_on": 1}
    assert moved(middle, outcomes(api)) == {"answered": 2, "handed_on": 0}
    for answer in (by_route, fast, json_in):
        assert answer.status_code == 200 and answer.headers["content-type"] == npy["accept"]
    assert fast.content == by_route.content
    outputs = np.load(io.BytesIO(fast.content))
    assert outputs.shape == (4, 3)
    np.testing.assert_allclose(np.load(io.BytesIO(json_in.content)), outputs, rtol=1e-6)


@pytest.mark.parametrize("case", ["wrong-width", "not-json", "nan", "bad-npy",
                                  "extra-field", "text-plain", "no-rows"])
def test_everything_else_is_answered_by_the_route(api, model, case):
    url = f"/v1/models/{model['id']}/predict"
    api.post(url, json={"inputs": model["rows"]})                        # loaded
    rows = np.asarray(model["rows"], np.float32)
    request = {
        "bad-npy": dict(content=npy_bytes(rows)[:-3], headers={"content-type": "application/x-npy"}),
        "wrong-width": dict(json={"inputs": [[1.0, 2.0]]}),
        "not-json": dict(content=b'{"inputs": [[1, 2', headers=JSON),
        "nan": dict(content=b'{"inputs": [[NaN, 1, 2, 3]]}', headers=JSON),
        "extra-field": dict(json={"inputs": model["rows"], "x": 1}),
        "text-plain": dict(content=b"1,2,3,4", headers={"content-type": "text/plain"}),
        "no-rows": dict(json={"inputs": []}),
    }[case]
    expected = {"text-plain": 415}.get(case, 422)
    before = outcomes(api)
    answer = api.post(url, **request)
    assert moved(before, outcomes(api)) == {"answered": 0, "handed_on": 1}
    assert answer.status_code == expected, answer.text
    assert set(answer.json()["error"]) >= {"status", "message"}


def test_an_unknown_model_is_404_from_the_route(api):
    before = outcomes(api)
    answer = api.post("/v1/models/model_does_not_exist/predict", json={"inputs": [[1.0]]})
    assert answer.status_code == 404 and "model_does_not_exist" in answer.json()["error"]["message"]
    assert moved(before, outcomes(api)) == {"answered": 0, "handed_on": 1}


def test_fast_answers_are_counted_and_logged_under_the_route_template(api, stack, model):
    url = f"/v1/models/{model['id']}/predict"
    api.post(url, json={"inputs": model["rows"]})                        # loaded
    route = {"method": "POST", "route": "/v1/models/{model_id}/predict"}
    before, fast_before = scrape(api), outcomes(api)
    for _ in range(3):
        assert api.post(url, json={"inputs": model["rows"]}).status_code == 200
    after = scrape(api)
    assert moved(fast_before, outcomes(api))["answered"] == 3
    assert value(after, "backprop_http_requests_total", status="200", **route) == \
        value(before, "backprop_http_requests_total", status="200", **route) + 3
    assert value(after, "backprop_http_request_duration_seconds_count", **route) >= \
        value(before, "backprop_http_request_duration_seconds_count", **route) + 3
    lines = log_lines(stack, lambda e: e.get("model_id") == model["id"]
                      and e.get("route") == route["route"] and e.get("status") == 200)
    assert len(lines) >= 4 and all(e["tenant"] == "public" for e in lines)
