"""Ids that are not ids, on a stack with two tenants' keys: a path id is checked against its
kind's form before any Redis access, so `job_x:history` never names another Redis key, and
another tenant's record reads exactly like one that never existed. And a failure nobody
foresaw still answers the JSON error body, on a connection that stays usable."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from core.keys import Keys
from core.records import new_id
from tests.service.helpers import classifier, trained_records
from tests.service.hostile_helpers import (KEYS, as_tenant, connect, keyed_stack,
                                           read_response, request_bytes)

@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    with keyed_stack(Path(tmp_path_factory.mktemp("hostile-ids"))) as stack:
        yield stack


@pytest.fixture(scope="module")
def alices(keyed) -> dict:
    """Alice's dataset, and a finished job (with history) trained on inline data, its model."""
    X = np.array([[0, 1], [1, 0], [1, 1], [0, 0]] * 5, dtype=np.float32)
    with as_tenant(keyed, "alice") as alice:
        ids = trained_records(alice, X, np.arange(20) % 3, classifier(hidden=4))
        inline = alice.post("/v1/jobs", json={
            "network": classifier(hidden=4), "training": {"epochs": 1},
            "data": {"X": X.tolist(), "y": (np.arange(20) % 3).tolist()}})
        assert inline.status_code == 202, inline.text
    return {**ids, "inline_job_id": inline.json()["id"]}


def store_of(stack) -> redis.Redis:
    return redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"])


# Paths whose id, followed by a suffix, names one of the service's other Redis keys.
KEY_SUFFIXES = {"job": [":history", ":data", ":checkpoint", ":lease", ":events"],
                "dataset": [":x", ":y"], "model": [""]}
ROUTES = {"job": ["GET /v1/jobs/{}", "GET /v1/jobs/{}/history", "GET /v1/jobs/{}/events",
                  "POST /v1/jobs/{}/cancel", "DELETE /v1/jobs/{}"],
          "dataset": ["GET /v1/datasets/{}", "DELETE /v1/datasets/{}"],
          "model": ["GET /v1/models/{}", "GET /v1/models/{}/weights",
                    "POST /v1/models/{}/predict", "GET /v1/models/{}/onnx",
                    "GET /v2/models/{}", "POST /v2/models/{}/infer"]}


def answer_shape(answer: httpx.Response, item_id: str) -> tuple:
    """What a client can tell an answer by, with the id it asked for blanked out."""
    return answer.status_code, answer.text.replace(item_id, "<id>"), \
        answer.headers.get("content-type")


@pytest.mark.parametrize("kind", sorted(ROUTES))
def test_ids_that_name_other_redis_keys_are_404s_like_missing_records(keyed, alices, kind):
    """Before: GET /v1/jobs/<id>:history answered 503 (WRONGTYPE) and /v1/jobs/<queued
    id>:data 500, for another tenant's ids as well, while a made-up id got 404."""
    owned = {"job": alices["inline_job_id"], "dataset": alices["dataset_id"],
             "model": alices["model_id"]}[kind]
    made_up = new_id(kind)
    differences = []
    with as_tenant(keyed, "alice") as alice, as_tenant(keyed, "bob") as bob:
        for route in ROUTES[kind]:
            method, path = route.split()
            for suffix in KEY_SUFFIXES[kind]:
                for client, base in ((alice, owned), (bob, owned), (bob, made_up)):
                    item_id = base + suffix
                    answer = client.request(method, path.format(item_id),
                                            json={"inputs": [[0, 1]]} if method == "POST"
                                            else None)
                    reference = bob.request(method, path.format(made_up + suffix + "x"),
                                            json={"inputs": [[0, 1]]} if method == "POST"
                                            else None)
                    if suffix == "" and client is alice:
                        continue  # alice's own model, unsuffixed: a real record
                    if answer_shape(answer, item_id) != answer_shape(reference,
                                                                     made_up + suffix + "x"):
                        differences.append((route, suffix, answer.status_code,
                                            answer.text[:160]))
    assert differences == []


def test_another_tenants_record_reads_exactly_like_a_made_up_one(keyed, alices):
    with as_tenant(keyed, "bob") as bob:
        for kind, path in (("job", "/v1/jobs/{}"), ("dataset", "/v1/datasets/{}"),
                           ("model", "/v1/models/{}")):
            theirs = {"job": alices["job_id"], "dataset": alices["dataset_id"],
                      "model": alices["model_id"]}[kind]
            made_up = new_id(kind)
            assert answer_shape(bob.get(path.format(theirs)), theirs) == \
                answer_shape(bob.get(path.format(made_up)), made_up)
            assert bob.get(path.format(theirs)).status_code == 404


# -- the unforeseen: JSON, and the connection kept --------------------------------------------------
def two_requests_on_one_connection(stack, path: str) -> tuple[tuple, tuple]:
    """(status, headers, body) of GET `path` as alice, then of GET /healthz, both sent on one
    keep-alive connection."""
    with connect(stack.url) as sock:
        sock.sendall(request_bytes("GET", path, {"Authorization": f"Bearer {KEYS['alice']}"}))
        first = read_response(sock)
        sock.sendall(request_bytes("GET", "/healthz", {}))
        second = read_response(sock)
    return first, second


def test_an_unexpected_error_is_the_json_500_and_the_connection_stays_open(keyed):
    """A job record that is not JSON (a real fault in the store) makes reading it fail in a
    way no handler knows. Before: a plain-text 500, and uvicorn dropped the connection."""
    job_id = new_id("job")
    store_of(keyed).hset(Keys().job(job_id), mapping={"tenant": '"alice"',
                                                      "status": "{not json"})
    first, second = two_requests_on_one_connection(keyed, f"/v1/jobs/{job_id}")
    status, headers, body = first
    assert status == 500 and headers["content-type"] == "application/json", first
    error = json.loads(body)["error"]
    assert error["status"] == 500 and "unexpected error" in error["message"], error
    assert second[0] == 200 and json.loads(second[2]) == {"status": "ok"}, second
    assert "unexpected error on GET" in (keyed.logs / "api.log").read_text()


def test_a_command_redis_refuses_is_a_json_500_not_unreachable(keyed):
    """A key of the wrong type at a well-formed id: Redis answers WRONGTYPE. That is not
    Redis being down (503, retry): it is a 500 naming what Redis said."""
    job_id = new_id("job")
    store_of(keyed).set(Keys().job(job_id), b"a string, not a hash")
    first, second = two_requests_on_one_connection(keyed, f"/v1/jobs/{job_id}")
    status, headers, body = first
    assert status == 500, first
    assert "refused a command (WRONGTYPE" in json.loads(body)["error"]["message"]
    assert second[0] == 200, second


def test_the_v2_protocol_gets_its_own_error_form_for_the_unforeseen(keyed):
    model_id = new_id("model")
    store_of(keyed).hset(Keys().model(model_id), mapping={"tenant": '"alice"',
                                                          "n_inputs": "{not json"})
    with as_tenant(keyed, "alice") as alice:
        answer = alice.get(f"/v2/models/{model_id}")
    assert answer.status_code == 500, answer.text
    assert isinstance(answer.json()["error"], str)


def test_every_route_checks_its_path_ids_first():
    """The check is the route class of every router (service.deps.IdCheckedRoute), not an
    app dependency: a router made without it would serve unchecked ids."""
    import importlib
    import pkgutil

    from fastapi.routing import APIRoute

    import service.routes
    from service.deps import IdCheckedRoute

    routes = []
    for module in pkgutil.iter_modules(service.routes.__path__):
        router = getattr(importlib.import_module(f"service.routes.{module.name}"), "router")
        routes += [r for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 30
    unchecked = [r.path for r in routes if not isinstance(r, IdCheckedRoute)]
    assert not unchecked
