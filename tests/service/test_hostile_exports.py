"""Issue 22, item 8, through real HTTP against a stack of its own: model exports (ONNX, JSON
and NPZ weights) are streamed off the event loop with about a chunk held beyond the model
itself, and at most BACKPROP_MAX_EXPORTS_PER_TENANT of a tenant's run at once (429 with
Retry-After past that)."""

from __future__ import annotations

import io
import time

import numpy as np
import onnx
import orjson
import pytest
import redis

from core.codec import arrays_to_npz
from core.records import ModelRecord, new_id
from core.store import Store
from service.exports import CHUNK_BYTES
from service.onnx_export import onnx_bytes
from tests.service.hostile_helpers import HealthProbe, as_tenant, keyed_stack, peak_rss

INPUTS, HIDDEN, OUTPUTS = 2000, 3000, 4  # 6M parameters: 24 MB as float32


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with keyed_stack(tmp_path_factory.mktemp("hostile-exports"),
                     BACKPROP_MAX_EXPORTS_PER_TENANT="2") as running:
        yield running


def stored_model(stack, tenant: str, inputs: int = INPUTS, hidden: int = HIDDEN,
                 outputs: int = OUTPUTS) -> tuple[str, list]:
    """A trained-looking model of `tenant` written to the stack's Redis as a job's end writes
    one (training 6M parameters here would take minutes): (model id, params)."""
    rng = np.random.default_rng(0)
    params = [(rng.normal(size=(hidden, inputs)).astype(np.float32) * 0.01,
               rng.normal(size=hidden).astype(np.float32)),
              (rng.normal(size=(outputs, hidden)).astype(np.float32) * 0.01,
               rng.normal(size=outputs).astype(np.float32))]
    model_id = new_id("model")
    network = {"layers": [{"units": hidden, "activation": "tanh"},
                          {"units": outputs, "activation": "softmax"}], "loss": "cross_entropy"}
    meta = ModelRecord(id=model_id, tenant=tenant, job_id=new_id("job"), network=network,
                       n_inputs=inputs, n_outputs=outputs, task="classification",
                       dtype="float32", epochs_trained=1, metrics={})
    named = {}
    for i, (W, b) in enumerate(params):
        named[f"W{i}"], named[f"b{i}"] = W, b
    Store(redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"])).put_model(
        meta, arrays_to_npz(named))
    return model_id, params, meta


def test_exports_are_the_same_bytes_a_whole_serialization_gives(stack):
    model_id, params, meta = stored_model(stack, "alice", 7, 9, 3)
    with as_tenant(stack, "alice") as alice:
        answer = alice.get(f"/v1/models/{model_id}/onnx")
        assert answer.status_code == 200, answer.text
        assert int(answer.headers["content-length"]) == len(answer.content)
        served = onnx.load_from_string(answer.content)
        whole = onnx.load_from_string(onnx_bytes(meta, params))
        assert served.SerializeToString() == whole.SerializeToString()
        weights = alice.get(f"/v1/models/{model_id}/weights")
        assert weights.content == orjson.dumps(
            {"model_id": model_id, "layers": [{"W": W.astype(np.float64), "b": b.astype(
                np.float64)} for W, b in params]}, option=orjson.OPT_SERIALIZE_NUMPY)
        npz = np.load(io.BytesIO(alice.get(f"/v1/models/{model_id}/weights",
                                           headers={"accept": "application/x-npz"}).content))
        assert all(np.array_equal(npz[f"W{i}"], W) for i, (W, _) in enumerate(params))


@pytest.mark.parametrize("path,accept", [("onnx", ""), ("weights", ""),
                                         ("weights", "application/x-npz")],
                         ids=["onnx", "json-weights", "npz-weights"])
def test_an_export_of_a_big_model_holds_little_and_leaves_healthz_answering(stack, path, accept):
    """A 6M-parameter model (24 MB), loaded: its export grows the API by a few chunks, not by
    copies of the body (before, ONNX held the graph and its serialization, JSON its
    whole 150 MB body: +1.1 GB and +1.4 GB for 49M parameters), and /healthz answers
    throughout (before: 0.8 to 3.2 s)."""
    model_id, params, _ = stored_model(stack, "bob")
    model_mb = sum(W.nbytes + b.nbytes for W, b in params) / 2**20
    small_id, _, _ = stored_model(stack, "bob", 7, 9, 3)
    with as_tenant(stack, "bob") as bob:  # loaded into the model cache, as predict loads it
        assert bob.get(f"/v1/models/{model_id}").status_code == 200
        # One small export first: the API imports onnx (about 15 MB) on its first ONNX export,
        # once per process, which is not what an export holds.
        assert bob.get(f"/v1/models/{small_id}/{path}",
                       headers={"accept": accept} if accept else {}).status_code == 200
    with as_tenant(stack, "bob") as bob, HealthProbe(stack.url) as probe, \
            peak_rss(stack.api.pid) as memory:
        for _ in range(4):  # long enough for the probe to ask a few times
            received = 0
            with bob.stream("GET", f"/v1/models/{model_id}/{path}",
                            headers={"accept": accept} if accept else {}) as answer:
                assert answer.status_code == 200
                for chunk in answer.iter_raw():
                    received += len(chunk)
    assert received > model_mb * 2**20 * (0.9 if path == "onnx" or accept else 4)
    # A few chunks on top of the loaded model, not a copy of the body.
    assert memory["grew"] < min(model_mb, 40 * CHUNK_BYTES / 2**20), memory
    assert probe.worst < 1.0, f"/healthz took {probe.worst:.2f} s during the export"


def test_a_tenant_runs_at_most_two_exports_at_once(stack):
    model_id, _, _ = stored_model(stack, "alice")
    other, _, _ = stored_model(stack, "bob", 7, 9, 3)
    with as_tenant(stack, "alice") as alice, as_tenant(stack, "bob") as bob:
        streams = [alice.stream("GET", f"/v1/models/{model_id}/weights") for _ in range(2)]
        opened = [s.__enter__() for s in streams]
        try:
            # Both running, their first chunk here; the readers are kept (one dropped closes
            # its response, and the server ends that export).
            readers = [answer.iter_raw() for answer in opened]
            assert [answer.status_code for answer in opened] == [200, 200]
            assert all(next(reader) for reader in readers)
            third = alice.get(f"/v1/models/{model_id}/onnx")
            assert third.status_code == 429, third.status_code
            assert "BACKPROP_MAX_EXPORTS_PER_TENANT=2" in third.json()["error"]["message"]
            assert int(third.headers["retry-after"]) > 0
            assert bob.get(f"/v1/models/{other}/onnx").status_code == 200  # others' own
        finally:
            for s in streams:
                s.__exit__(None, None, None)
        deadline = time.monotonic() + 10  # the abandoned streams give their slots back
        while alice.get(f"/v1/models/{other}/onnx").status_code != 404:
            assert time.monotonic() < deadline
        answer = alice.get(f"/v1/models/{model_id}/onnx")
        while answer.status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
            answer = alice.get(f"/v1/models/{model_id}/onnx")
        assert answer.status_code == 200, answer.text
