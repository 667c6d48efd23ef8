"""Workers on another machine: a second compose project (its own network, standing in for
another host) joins the stack through its published, password-protected Redis; with a wrong
password it is refused and says so. And the stack with Redis over TLS only."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from service.embedded_redis import free_port
from tests.deploy.harness import Project, run, timed
from tests.deploy.jobs import (containers_logging, epochs_recorded, finished, submit, upload,
                               wait_ready)

# The other "host" reaches this one by a name, as a real worker host would: Docker's
# host-gateway is this host's address on the default bridge network.
REMOTE_HOST = "services:\n  worker:\n    extra_hosts: [\"redis-host:host-gateway\"]\n"


def bridge_gateway(engine) -> str:
    """This host's address on Docker's default bridge, what host-gateway stands for."""
    network = json.loads(engine("network", "inspect", "bridge").stdout)[0]
    config = network["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return config["Gateway"]
    bridge = network["Options"]["com.docker.network.bridge.name"]
    address = run("ip", "-4", "-o", "addr", "show", "dev", bridge).stdout.split()[3]
    return address.split("/")[0]


@pytest.fixture()
def published(engine, stack):
    """The stack with Redis published on the bridge gateway address (a free port) and no
    workers of its own, so that only the other project's workers can train."""
    port = free_port()
    publish = Project(stack.project.name, stack.project.directory,
                      ["docker-compose.yml", "docker-compose.publish.yml"],
                      {**stack.project.env,
                       "BACKPROP_REDIS_PUBLISH": f"{bridge_gateway(engine)}:{port}"})
    publish.compose("up", "-d", "--no-build", "--scale", "worker=0")
    yield port
    stack.project.compose("up", "-d", "--no-build", "--scale", "worker=2")


def remote_workers(stack, tmp_path: Path, url: str) -> Project:
    (tmp_path / "remote-host.yml").write_text(REMOTE_HOST)
    return Project(f"{stack.project.name}-remote", stack.project.directory,
                   ["docker-compose.workers.yml", str(tmp_path / "remote-host.yml")],
                   {"BACKPROP_REDIS_URL": url, "BACKPROP_REDIS_TLS_DIR": str(tmp_path)})


def test_workers_of_another_project_train_through_the_published_redis(
        engine, stack, published, tmp_path):
    good = f"redis://backprop:{stack.password}@redis-host:{published}/0"
    remote = remote_workers(stack, tmp_path, good)
    try:
        with timed("test: remote workers (second project) join and train"):
            remote.compose("up", "-d", "--no-build", "--scale", "worker=1")
            wait_ready(stack.url, workers=1)
            with stack.client() as api:
                job = submit(api, upload(api, rows=400, seed=3), epochs=30)
                finished(api, job, timeout_s=300)
                assert epochs_recorded(api, job) == list(range(1, 31))
            assert containers_logging(remote, "worker", job, "training started")
            networks = json.loads(engine("inspect", remote.containers("worker")[0]).stdout)[0][
                "NetworkSettings"]["Networks"]
            assert list(networks) == [f"{remote.name}_default"], "its own network only"
        remote.compose("down", timeout=300)

        with timed("test: remote workers with a wrong password"):
            wrong = remote_workers(stack, tmp_path,
                                   good.replace(stack.password, "not-the-password"))
            wrong.compose("up", "-d", "--no-build", "--scale", "worker=1")
            deadline = time.monotonic() + 90
            while "refused this worker's credentials" not in wrong.logs("worker"):
                assert time.monotonic() < deadline, wrong.logs("worker")[-3000:]
                time.sleep(1)
            assert "check the user and password in BACKPROP_REDIS_URL" in wrong.logs("worker")
            # No worker got in: the stack counts none, and a job is refused rather than queued
            # for ever.
            assert httpx.get(f"{stack.url}/readyz", timeout=10).json()["workers"] == 0
            with stack.client() as api:
                answer = api.post("/v1/jobs", json={
                    "dataset_id": upload(api, rows=100, seed=4),
                    "network": {"layers": [{"units": 2, "activation": "softmax"}],
                                "loss": "cross_entropy"},
                    "training": {"epochs": 1}})
                assert answer.status_code == 503 and "no worker" in answer.text, answer.text
    finally:
        remote.compose("down", check=False, timeout=300)


def make_certificates(folder: Path) -> None:
    """A CA and a server certificate for the names clients use (`redis` inside compose)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=backprop test CA", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=redis", "-keyout",
            "redis.key", "-out", "redis.csr")
    (folder / "san.cnf").write_text("subjectAltName=DNS:redis,DNS:redis-host,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "redis.crt")
    for name in ("ca.crt", "redis.crt", "redis.key"):
        (folder / name).chmod(0o644)  # readable by the Redis container's own user


def test_stack_with_redis_over_tls_only(engine, images, stack, tmp_path):
    make_certificates(tmp_path)
    port = free_port()
    tls = Project(f"{stack.project.name}-tls", stack.project.directory,
                  ["docker-compose.yml", "docker-compose.tls.yml"],
                  {**stack.project.env, "BACKPROP_REDIS_IMAGE": images.redis_tls,
                   "BACKPROP_REDIS_TLS_DIR": str(tmp_path),
                   "BACKPROP_PORT": f"127.0.0.1:{port}"})
    try:
        with timed("test: stack with Redis over TLS"):
            tls.compose("up", "-d", "--no-build", "--scale", "worker=1")
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, workers=1)
            api_env = json.loads(engine("inspect", tls.containers("api")[0]).stdout)[0][
                "Config"]["Env"]
            assert any(e.startswith("BACKPROP_REDIS_URL=rediss://") for e in api_env)
            with stack.client() as api:
                api.base_url = url
                job = submit(api, upload(api, rows=200, seed=5), epochs=10)
                finished(api, job, timeout_s=300)
            plain = engine("exec", tls.containers("api")[0], "python", "-c",
                           "import os, redis; url = os.environ['BACKPROP_REDIS_URL'];"
                           "redis.Redis.from_url(url.replace('rediss:', 'redis:', 1)"
                           ".split('?')[0], socket_timeout=3).ping()", check=False)
            assert plain.returncode != 0, "a plain-text client must not get through"
    finally:
        tls.compose("down", "-v", check=False, timeout=300)
