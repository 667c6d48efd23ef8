"""API keys on a real stack of its own (BACKPROP_API_KEYS with two tenants): every API endpoint
needs a key, each key is a tenant that cannot see, use or remove another tenant's records (404,
not 403), and no key ever reaches a log or Redis."""

from __future__ import annotations

import inspect
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from core.settings import Settings
from service import auth
from service.cli import build_parser
from service.embedded_redis import EmbeddedValkey
from service.launcher import Stack
from tests.service.helpers import classifier, idle_gpu_worker, own_stack

ALICE_KEY, BOB_KEY = "alice-secret-7f3a9c51", "bob-secret-2b8e41d0"
WRONG_KEY = "mallory-guess-93c1e7aa"
SECRETS = (ALICE_KEY, BOB_KEY, WRONG_KEY)
OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready", "/v2"}
NETWORK = classifier(hidden=4, classes=2)
FINISHED = {"succeeded", "failed", "canceled"}


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("auth"))
    stack = own_stack(root, extra_env={"BACKPROP_API_KEYS": f"alice:{ALICE_KEY}, bob:{BOB_KEY}"})
    yield stack
    stack.stop()


def client(stack: Stack, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=stack.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def alice_records(keyed_stack) -> dict:
    """Alice's dataset, a finished job with its model, and a job that stays queued (GPU queue,
    whose worker takes no job) so that cancel can be tried on it."""
    X = np.random.default_rng(1).normal(size=(30, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, X=X, y=y)
    with client(keyed_stack, ALICE_KEY) as alice:
        dataset = alice.post("/v1/datasets", files={"file": ("a.npz", buf.getvalue())})
        assert dataset.status_code == 201, dataset.text
        body = {"network": NETWORK, "dataset_id": dataset.json()["id"], "training": {"epochs": 2}}
        job = alice.post("/v1/jobs", json=body).json()
        with idle_gpu_worker(keyed_stack.env["BACKPROP_REDIS_URL"]):
            queued = alice.post("/v1/jobs", json={**body, "device": "gpu"}).json()
        deadline = time.monotonic() + 60
        while (done := alice.get(f"/v1/jobs/{job['id']}").json())["status"] not in FINISHED:
            assert time.monotonic() < deadline, done
            time.sleep(0.05)
        assert done["status"] == "succeeded", done
    return {"dataset_id": dataset.json()["id"], "job_id": job["id"],
            "model_id": done["model_id"], "queued_job_id": queued["id"]}


def api_operations(stack: Stack) -> list[tuple[str, str]]:
    """(method, path) of every operation in the stack's OpenAPI document that is not open."""
    document = httpx.get(f"{stack.url}/openapi.json").json()
    return [(method.upper(), path) for path, ops in document["paths"].items()
            for method in ops if path not in OPEN_PATHS]


def error_shaped(path: str, body: dict) -> bool:
    """/v1 answers ErrorOut; /v2 speaks the KServe protocol, whose errors are {"error": str}."""
    if path.startswith("/v2/"):
        return isinstance(body.get("error"), str)
    return {"status", "message"} <= set(body.get("error", {}))


def fill(path: str, ids: dict) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


# -- a key is required ----------------------------------------------------------------------------
@pytest.mark.parametrize("authorization", [None, f"Bearer {WRONG_KEY}", f"Basic {ALICE_KEY}",
                                           "Bearer", f"bearer {ALICE_KEY}x", ALICE_KEY],
                         ids=["none", "wrong-key", "basic-scheme", "empty", "key-suffix",
                              "no-scheme"])
def test_every_api_operation_needs_a_valid_key(keyed_stack, alice_records, authorization):
    operations = api_operations(keyed_stack)
    assert len(operations) >= 15, operations
    headers = {"Authorization": authorization} if authorization else {}
    refused = []
    for method, path in operations:
        url = fill(path, alice_records)
        answer = httpx.request(method, keyed_stack.url + url, headers=headers, timeout=30,
                               json={"inputs": [[0, 0]]} if method == "POST" else None)
        if answer.status_code != 401 or "Bearer" not in answer.headers.get("WWW-Authenticate",
                                                                            ""):
            refused.append((method, url, answer.status_code, answer.text[:200]))
        elif not error_shaped(path, answer.json()):
            refused.append((method, url, "not the error body of its API", answer.text[:200]))
    assert refused == []


def test_health_stays_open(keyed_stack):
    assert httpx.get(f"{keyed_stack.url}/healthz").status_code == 200
    assert httpx.get(f"{keyed_stack.url}/readyz").status_code == 200


def test_the_scheme_is_case_insensitive_and_the_key_exact(keyed_stack):
    with httpx.Client(base_url=keyed_stack.url, timeout=30) as api:
        assert api.get("/v1/datasets", headers={"Authorization": f"bearer {ALICE_KEY}"}
                       ).status_code == 200
        assert api.get("/v1/datasets", headers={"Authorization": f"Bearer {ALICE_KEY[:-1]}"}
                       ).status_code == 401


# -- tenants ---------------------------------------------------------------------------------------
def test_a_tenant_lists_only_its_own_records(keyed_stack, alice_records):
    with client(keyed_stack, BOB_KEY) as bob, client(keyed_stack, ALICE_KEY) as alice:
        assert bob.get("/v1/datasets").json() == {"datasets": [], "next": None}
        assert bob.get("/v1/jobs").json() == {"jobs": [], "next": None}
        assert bob.get("/v1/jobs?status=succeeded").json() == {"jobs": [], "next": None}
        assert {d["id"] for d in alice.get("/v1/datasets").json()["datasets"]} == {
            alice_records["dataset_id"]}
        assert alice_records["job_id"] in {j["id"] for j in alice.get("/v1/jobs").json()["jobs"]}


def test_another_tenants_records_read_as_missing_everywhere(keyed_stack, alice_records):
    """Bob may read, history, predict with, cancel or delete none of alice's records: 404 (the
    same answer as for an id that never existed), for every operation that names a record."""
    leaks = []
    with client(keyed_stack, BOB_KEY) as bob:
        for method, path in api_operations(keyed_stack):
            if "{" not in path:
                continue
            ids = dict(alice_records, job_id=alice_records["queued_job_id"]) \
                if path.endswith("/cancel") else alice_records
            url = fill(path, ids)
            answer = bob.request(method, url,
                                 json={"inputs": [[0, 0]]} if method == "POST" else None)
            if answer.status_code != 404:
                leaks.append((method, path, answer.status_code, answer.text[:200]))
            elif any(v in answer.text for v in alice_records.values() if v not in url):
                leaks.append((method, path, "names another record", answer.text[:200]))
    assert leaks == []
    with client(keyed_stack, ALICE_KEY) as alice:  # and nothing of alice's was touched
        assert alice.get(f"/v1/datasets/{alice_records['dataset_id']}").status_code == 200
        assert alice.get(f"/v1/jobs/{alice_records['job_id']}").status_code == 200
        assert alice.get(f"/v1/jobs/{alice_records['queued_job_id']}").json()["status"] == \
            "queued"
        assert alice.get(f"/v1/jobs/{alice_records['job_id']}/history").json()["epochs"]
        predicted = alice.post(f"/v1/models/{alice_records['model_id']}/predict",
                               json={"inputs": [[0.5, -0.5]]})
        assert predicted.status_code == 200, predicted.text


def test_a_tenant_cannot_train_on_another_tenants_dataset(keyed_stack, alice_records):
    with client(keyed_stack, BOB_KEY) as bob:
        answer = bob.post("/v1/jobs", json={"network": NETWORK,
                                            "dataset_id": alice_records["dataset_id"]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "dataset_id"


# -- keys are secrets ------------------------------------------------------------------------------
def test_keys_never_reach_the_logs_or_redis(keyed_stack, alice_records):
    with httpx.Client(base_url=keyed_stack.url, timeout=30) as api:
        for key in SECRETS:  # good and bad keys, on good and bad requests
            headers = {"Authorization": f"Bearer {key}"}
            api.get("/v1/datasets", headers=headers)
            api.get("/v1/jobs/nope", headers=headers)
            api.post("/v1/jobs", headers=headers, content=b"{broken")
    logs = list(keyed_stack.logs.glob("*.log"))
    assert {p.name for p in logs} >= {"api.log", "worker1.log"}
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {path.name}"
    store = redis.Redis.from_url(keyed_stack.env["BACKPROP_REDIS_URL"])
    for name in store.scan_iter(count=1000):
        kind = store.type(name)
        values = ([store.get(name)] if kind == b"string" else
                  list(store.hgetall(name).items()) if kind == b"hash" else
                  store.lrange(name, 0, -1) if kind == b"list" else
                  list(store.smembers(name)) if kind == b"set" else
                  store.zrange(name, 0, -1) if kind == b"zset" else [])
        blob = repr((name, values)).encode()
        for secret in SECRETS:
            assert secret.encode() not in blob, (name, kind)


def test_keys_are_compared_as_digests_in_constant_time():
    source = inspect.getsource(auth.tenant_for_key)  # authenticated() uses it
    assert "hmac.compare_digest" in source and "key_digest(" in source
    digest = auth.key_digest(ALICE_KEY)
    assert len(digest) == 32 and ALICE_KEY.encode() not in digest


def test_a_bare_key_keeps_its_tenant_when_the_key_list_changes():
    before = Settings(api_keys="k-one,k-two,k-three").tenant_keys
    after = Settings(api_keys="k-three, k-two").tenant_keys
    assert after["k-two"] == before["k-two"] and after["k-three"] == before["k-three"]
    assert len(set(before.values())) == 3
    assert all(key not in tenant for key, tenant in before.items())


def test_a_tenant_may_hold_two_keys_for_rotation():
    keys = Settings(api_keys="alice:old-key,alice:new-key,bob:b").tenant_keys
    assert keys == {"old-key": "alice", "new-key": "alice", "b": "bob"}


def test_the_embedded_default_binds_loopback_only(tmp_path):
    parser = build_parser()
    assert parser.parse_args(["up"]).host == "127.0.0.1"
    assert parser.parse_args(["api"]).host == "127.0.0.1"
    command = EmbeddedValkey(tmp_path).command()
    assert command[command.index("--bind") + 1] == "127.0.0.1"
    assert Settings.model_fields["api_keys"].default == ""  # keyless unless keys are set


def test_predict_checks_keys_and_tenants_of_a_loaded_model(keyed_stack, alice_records):
    url, body = f"/v1/models/{alice_records['model_id']}/predict", {"inputs": [[0.5, -0.5]]}
    with client(keyed_stack, ALICE_KEY) as alice:
        assert alice.post(url, json=body).status_code == 200     # now loaded in the API
        for authorization, status in ((None, 401), (f"Bearer {WRONG_KEY}", 401),
                                      (f"Basic {ALICE_KEY}", 401), ("Bearer", 401),
                                      (f"Bearer {BOB_KEY}", 404)):
            headers = {"Authorization": authorization} if authorization else {}
            answer = httpx.post(keyed_stack.url + url, json=body, headers=headers, timeout=30)
            assert answer.status_code == status, (authorization, answer.text)
            assert alice_records["model_id"] not in answer.text or status == 404
        assert alice.post(url, json=body).status_code == 200
