"""Deleting a model reaches every API process's cache (keys.models_deleted pub/sub), and a
cached model is served without a Redis round trip.

Two extra API processes on the session's Valkey; the model is trained through the session
stack. What reached Redis is read from Valkey itself (MONITOR): a cached predict sends nothing
about its model, a load reads the model's hash.
"""

from __future__ import annotations

import httpx
import pytest

from tests.service.helpers import (blobs, classifier, model_reads, redis_commands,
                                   served_from_cache, start_api, stop_api, trained_records)


@pytest.fixture()
def two_apis(service_env):
    import os

    env = {k: v for k, v in {**os.environ, **service_env}.items()
           if k != "PROMETHEUS_MULTIPROC_DIR"}
    first, first_url = start_api(env)
    try:
        second, second_url = start_api(env)
        try:
            with httpx.Client(base_url=first_url, timeout=30) as a, \
                    httpx.Client(base_url=second_url, timeout=30) as b:
                yield a, b
        finally:
            stop_api(second)
    finally:
        stop_api(first)


def loaded_in(redis_url: str, api: httpx.Client, model_id: str, rows: list) -> None:
    """Predict until this process answers from its cache (its deletion listener may still be
    subscribing when it starts: until then nothing is cached)."""
    for _ in range(50):
        if served_from_cache(redis_url, api, model_id, rows):
            return
    raise AssertionError("the model never reached the cache")


def gone_from(api: httpx.Client, model_id: str, rows: list) -> int:
    answer = api.post(f"/v1/models/{model_id}/predict", json={"inputs": rows})
    return answer.status_code


@pytest.mark.parametrize("how", ["delete-model", "delete-job"])
def test_a_deletion_through_one_process_reaches_the_other(api, two_apis, service_env, how):
    a, b = two_apis
    X, y = blobs(n=60, features=4, seed=11)
    records = trained_records(api, X, y, classifier(hidden=4))
    model_id, rows = records["model_id"], X[:2].tolist()
    loaded_in(service_env["BACKPROP_REDIS_URL"], a, model_id, rows)
    loaded_in(service_env["BACKPROP_REDIS_URL"], b, model_id, rows)
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

    import engine
    from service.model_cache import ModelCache
    from core.codec import arrays_to_npz
    from core.records import ModelRecord
    from core.store import Store

    store = Store(redis_client, prefix)
    network = {"layers": [{"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
    net = engine.Network(network, n_inputs=3)
    weights = arrays_to_npz({"W0": net.params[0][0], "b0": net.params[0][1]})
    for model_id in model_ids:
        store.put_model(ModelRecord(id=model_id, tenant="public", network=network, n_inputs=3,
                                    n_outputs=2, dtype="float32", task="classification"),
                        weights)
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


@pytest.fixture(scope="module")
def keyed(stack):
    """An API process with two tenants' keys on the session's Valkey (its workers train), and a
    model of alice's that this process has not loaded yet."""
    from service.embedded_redis import free_port
    from service.launcher import Stack
    from core.settings import Settings

    keyed = Stack(Settings(), "127.0.0.1", free_port(), workers=0, extra_env={
        "BACKPROP_API_KEYS": "alice:key-of-alice,bob:key-of-bob"}).start()
    X, y = blobs(n=60, features=4, seed=13)
    with httpx.Client(base_url=keyed.url, timeout=30,
                      headers={"Authorization": "Bearer key-of-alice"}) as alice:
        model_id = trained_records(alice, X, y, classifier(hidden=4))["model_id"]
    yield {"url": keyed.url, "model_id": model_id, "rows": X[:2].tolist()}
    keyed.stop()


def test_another_tenants_model_is_never_loaded(keyed, service_env):
    """Bob's requests on alice's model read its owner alone (one HGET of one field), never its
    weights, and answer 404 as for a made-up id; alice's first predict loads it (HGETALL), her
    next is served from the cache."""
    model_id, url = keyed["model_id"], keyed["url"]
    redis_url = service_env["BACKPROP_REDIS_URL"]
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": "Bearer key-of-bob"}) as bob, \
            redis_commands(redis_url) as commands:
        answers = [bob.post(f"/v1/models/{model_id}/predict", json={"inputs": keyed["rows"]}),
                   bob.post(f"/v2/models/{model_id}/infer", json={"inputs": [
                       {"name": "input", "shape": [1, 4], "datatype": "FP32",
                        "data": keyed["rows"][0]}]}),
                   bob.get(f"/v1/models/{model_id}"), bob.get(f"/v2/models/{model_id}/ready")]
    assert [a.status_code for a in answers] == [404] * 4, [a.text for a in answers]
    reads = model_reads(commands, model_id)
    assert len(reads) == 4 and all(r.upper().startswith("HGET ") and r.endswith(" tenant")
                                   for r in reads), reads
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": "Bearer key-of-alice"}) as alice:
        with redis_commands(redis_url) as commands:
            first = alice.post(f"/v1/models/{model_id}/predict", json={"inputs": keyed["rows"]})
        assert first.status_code == 200, first.text
        assert any(r.upper().startswith("HGETALL ") for r in model_reads(commands, model_id))
        loaded_in(redis_url, alice, model_id, keyed["rows"])
