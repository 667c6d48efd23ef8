"""Issue 22's items 1 and 10 against the compose stack (tests/service has them against
`backprop up`): every byte a tenant makes the compose Valkey hold is charged to its quota and
given back when deleted, read through the ACL user the services use; and connections that
dawdle are closed through the published port (Docker's proxy in between), with the default
timeouts, while /healthz answers. Runs after test_stack.py, on the same stack."""

from __future__ import annotations

import csv
import io
import time

import httpx
import numpy as np

from core import quota
from core.keys import Keys
from core.settings import Settings
from tests.deploy.harness import docker_client, run, timed
from tests.service.hostile_helpers import closed_by_server, connect, request_bytes

TENANT = "alice"   # the README's .env names the one key's tenant so
HEADER_S = Settings.model_fields["http_header_timeout_s"].default
BODY_S = Settings.model_fields["http_body_timeout_s"].default


def tenant_bytes(stack) -> int:
    """The tenant's charged bytes, read inside the Redis container as the `backprop` user."""
    [redis] = stack.project.containers("redis")
    said = run(docker_client(), "exec", redis, "valkey-cli", "--user", "backprop", "--pass",
               stack.password, "--no-auth-warning", "GET", Keys().tenant_bytes(TENANT))
    return int(said.stdout.strip() or 0)


def wide_categories_csv(rows: int = 300, length: int = 2000) -> bytes:
    """A text column whose every value is a distinct 2 KB category: some 600 KB of schema
    for a few KB of arrays."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["tag", "x", "y"])
    for i in range(rows):
        writer.writerow([f"{i:05d}" + "c" * length, i % 7, i % 2])
    return out.getvalue().encode()


def test_every_stored_byte_is_charged_and_given_back(stack):
    """A dataset's schema is charged, not only its arrays, and deleting it gives back exactly
    what it took; a job's history is reserved at submit."""
    with timed("test: quota charges (item 1)"), stack.client() as api:
        before = tenant_bytes(stack)
        answer = api.post("/v1/datasets", files={"file": ("t.csv", wide_categories_csv())},
                          data={"target": "y"})
        assert answer.status_code == 201, answer.text[:500]
        dataset = answer.json()
        charged = tenant_bytes(stack) - before
        assert charged > 500_000 > 3 * dataset["bytes"], (charged, dataset["bytes"])
        assert api.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
        assert tenant_bytes(stack) == before
        X = np.random.default_rng(0).normal(size=(16, 4)).round(3)
        job = api.post("/v1/jobs", json={
            "data": {"X": X.tolist(), "y": (X[:, 0] > 0).astype(int).tolist()},
            "training": {"epochs": 3000, "optimizer": "sgd", "batch_size": 16},
            "network": {"layers": [{"units": 2, "activation": "softmax"}],
                        "loss": "cross_entropy"}})
        assert job.status_code == 202, job.text[:500]
        assert tenant_bytes(stack) - before > 3000 * quota.EPOCH_BYTES
        assert api.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code in (202, 409)


def test_dawdling_connections_are_closed_through_the_published_port(stack):
    """50 connections that never finish their headers (a byte of header every second) and one
    whose body stops coming: the first closed after BACKPROP_HTTP_HEADER_TIMEOUT_S, the other
    after BACKPROP_HTTP_BODY_TIMEOUT_S (the defaults), /healthz answering throughout."""
    with timed("test: dawdling connections (item 10)"):
        dawdlers = []
        for _ in range(50):
            sock = connect(stack.url)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: deploy\r\nX-a: ")
            dawdlers.append(sock)
        body = connect(stack.url)
        body.sendall(request_bytes("POST", "/v1/datasets", {
            "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json",
            "Content-Length": "100000"}, b'{"X": [[1'))
        started, worst = time.monotonic(), 0.0
        with httpx.Client(base_url=stack.url, timeout=30) as probe:
            while time.monotonic() < started + HEADER_S + 5:
                for sock in dawdlers:
                    try:
                        sock.sendall(b"x")
                    except OSError:
                        pass
                asked = time.monotonic()
                assert probe.get("/healthz").status_code == 200
                worst = max(worst, time.monotonic() - asked)
                time.sleep(1)
            still_open = sum(not closed_by_server(s) for s in dawdlers)
            time.sleep(max(0.0, started + BODY_S + 5 - time.monotonic()))
            assert probe.get("/healthz").status_code == 200
        body_closed = closed_by_server(body)
        for sock in [*dawdlers, body]:
            sock.close()
    assert still_open == 0, f"{still_open} of {len(dawdlers)} dawdlers still open"
    assert body_closed, "a body that stopped coming was never closed"
    assert worst < 1.0, f"/healthz took {worst:.2f} s"
