"""One status per failure, on /v1 and /v2 alike (service.errors): a full store (Redis past its
maxmemory) is 507, an unreachable one 503 with Retry-After; only the body's form differs
(/v2 speaks the inference protocol's {"error": "message"}). Before: /v2 answered 503 for all."""

from __future__ import annotations

import orjson
import pytest
import redis

from core.records import new_id
from service.embedded_redis import EmbeddedValkey
from service.errors import as_api_error, error_response
from tests.service.fault_helpers import fault_stack, wait_until

V1, V2 = "/v1/models/{}/predict", "/v2/models/{}/infer"


def body_of(response) -> dict:
    return orjson.loads(response.body)


def test_a_full_store_is_507_in_both_protocols(tmp_path):
    """A write that Valkey refuses past its maxmemory, as redis-py raises it, answered on each
    protocol's path by the one handler."""
    valkey = EmbeddedValkey(tmp_path / "valkey", maxmemory="1mb").start()
    try:
        client = redis.Redis.from_url(valkey.url)
        with pytest.raises(redis.OutOfMemoryError) as refused:
            for i in range(64):
                client.set(f"filler:{i}", b"x" * 65536)
        error = as_api_error(refused.value)
        v1 = error_response("/v1/datasets", error)
        v2 = error_response("/v2/models/mdl_x/infer", error)
        assert v1.status_code == v2.status_code == 507
        assert "BACKPROP_REDIS_MAXMEMORY" in body_of(v1)["error"]["message"]
        assert body_of(v2) == {"error": body_of(v1)["error"]["message"]}
    finally:
        valkey.stop()


def test_an_unreachable_store_is_503_with_retry_after_in_both_protocols(tmp_path):
    with fault_stack(tmp_path, workers=1) as fs:
        model_id = new_id("model")  # of a model's form, so the lookup reaches Redis
        assert fs.api.post(V1.format(model_id), json={"inputs": [[1.0]]}).status_code == 404
        fs.valkey.stop()
        infer = {"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32",
                             "data": [1.0]}]}
        answers = {
            "/v1 predict": wait_until(lambda: _failed(fs.api.post(
                V1.format(model_id), json={"inputs": [[1.0]]})), 20, "/v1 to fail"),
            "/v1 model": fs.api.get(f"/v1/models/{model_id}"),
            "/v2 infer": fs.api.post(V2.format(model_id), json=infer),
            "/v2 model": fs.api.get(f"/v2/models/{model_id}"),
        }
        for what, answer in answers.items():
            assert answer.status_code == 503, (what, answer.text)
            assert answer.headers["retry-after"] == "2", what
            error = answer.json()["error"]
            message = error if what.startswith("/v2") else error["message"]
            assert "unreachable" in message and "retry" in message, (what, message)


def _failed(answer):
    return answer if answer.status_code != 404 else None
