"""Deleting a model reaches every API process's cache (keys.models_deleted pub/sub).

Two extra API processes on the session's Valkey; the model is trained through the session
stack. Which path answered is read from each process's own /metrics.
"""

from __future__ import annotations

import httpx
import pytest

from tests.service.helpers import blobs, classifier, trained_records
from tests.service.test_fast_predict import outcomes
from tests.service.test_metrics import _start_api, _stop


@pytest.fixture()
def two_apis(service_env):
    import os

    env = {k: v for k, v in {**os.environ, **service_env}.items()
           if k != "PROMETHEUS_MULTIPROC_DIR"}       # each process counts its own requests
    first, first_url = _start_api(env)
    try:
        second, second_url = _start_api(env)
        try:
            with httpx.Client(base_url=first_url, timeout=30) as a, \
                    httpx.Client(base_url=second_url, timeout=30) as b:
                yield a, b
        finally:
            _stop(second)
    finally:
        _stop(first)


def loaded_in(api: httpx.Client, model_id: str, rows: list) -> None:
    """Predict until this process answers on the fast path (the model is in its cache)."""
    for _ in range(50):
        before = outcomes(api)
        assert api.post(f"/v1/models/{model_id}/predict", json={"inputs": rows}).status_code == 200
        if outcomes(api)["answered"] > before["answered"]:
            return
    raise AssertionError("the model never reached the fast path")


def gone_from(api: httpx.Client, model_id: str, rows: list) -> int:
    answer = api.post(f"/v1/models/{model_id}/predict", json={"inputs": rows})
    return answer.status_code


@pytest.mark.parametrize("how", ["delete-model", "delete-job"])
def test_a_deletion_through_one_process_reaches_the_other(api, two_apis, how):
    a, b = two_apis
    X, y = blobs(n=60, features=4, seed=11)
    records = trained_records(api, X, y, classifier(hidden=4))
    model_id, rows = records["model_id"], X[:2].tolist()
    loaded_in(a, model_id, rows)
    loaded_in(b, model_id, rows)
    if how == "delete-model":
        assert a.delete(f"/v1/models/{model_id}").status_code == 204
    else:
        assert a.delete(f"/v1/jobs/{records['job_id']}").status_code == 204
    import time
    deadline = time.monotonic() + 5
    while gone_from(b, model_id, rows) != 404:
        assert time.monotonic() < deadline, "the other process still serves the deleted model"
        time.sleep(0.02)
    assert gone_from(a, model_id, rows) == 404


def stored_model(redis_client, prefix: str, *model_ids: str):
    """A Store under `prefix` holding a tiny classifier under each id, and a ModelCache over it
    that listens to nothing (the tests play the listener)."""
    import time

    import engine
    from service.model_cache import ModelCache
    from worker.codec import arrays_to_npz
    from worker.store import Store

    store = Store(redis_client, prefix)
    network = {"layers": [{"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
    net = engine.Network(network, n_inputs=3)
    weights = arrays_to_npz({"W0": net.params[0][0], "b0": net.params[0][1]})
    for model_id in model_ids:
        store.put_model({"id": model_id, "tenant": "public", "network": network, "n_inputs": 3,
                         "dtype": "float32", "task": "classification",
                         "created_at": time.time()}, weights)
    cache = ModelCache(store, size=4, listen=False)
    cache.set_listening(True)
    return store, cache


def test_a_load_racing_a_deletion_is_not_kept(redis_client):
    """The deletion message can arrive between the cache's read of Redis and its insert: the
    id is remembered, so the stale copy is never served from the cache afterwards."""
    store, cache = stored_model(redis_client, "test-cache-race", "mdl_race", "mdl_other")
    cache.evict("mdl_race", deleted=True)              # the message won the race
    assert cache.get("public", "mdl_race") is not None  # this request still gets its answer
    assert cache.peek("public", "mdl_race") is None     # but nothing stale stays cached
    assert cache.get("public", "mdl_other") is not None
    assert cache.peek("public", "mdl_other") is not None
    assert cache.peek("someone-else", "mdl_other") is None
    cache.set_listening(False)                          # Redis lost: serve nothing cached
    assert cache.peek("public", "mdl_other") is None


def test_a_load_spanning_a_reconnect_is_not_kept(redis_client):
    """Deletions published while the listener was away are lost to it: a model read from Redis
    before it came back may be stale, so it is answered once but not cached."""
    store, cache = stored_model(redis_client, "test-cache-gap", "mdl_gap")
    real_read = store.model_with_weights

    def read_during_a_reconnect(*args):
        found = real_read(*args)
        cache.set_listening(False)          # what the listener does when Redis drops...
        cache.set_listening(True)           # ...and when it has subscribed again
        return found

    store.model_with_weights = read_during_a_reconnect
    assert cache.get("public", "mdl_gap") is not None
    assert cache.peek("public", "mdl_gap") is None
    store.model_with_weights = real_read
    assert cache.get("public", "mdl_gap") is not None
    assert cache.peek("public", "mdl_gap") is not None
