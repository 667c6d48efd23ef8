"""The compose stack, built and run for real: the README's deploy steps and walkthrough with a
key, then the faults a deployment meets (a worker stopped mid-job, down and up, a Redis
restart). The tests run in file order on one stack."""

from __future__ import annotations

import json
import subprocess

import httpx
import numpy as np

from tests.deploy.harness import clean_env, docker_client, readme_block, run, timed
from tests.deploy.jobs import (containers_logging, epochs_recorded, finished, submit, upload,
                               wait_for, wait_ready)


def test_both_builders_build_the_plain_dockerfile(engine, images, tree, stack):
    """compose built with the classic builder (docker-py); a plain `docker build .` with
    BuildKit must build it too, and neither reads a CUDA base."""
    args = [] if images.python == "python:3.11-slim-bookworm" else [
        "--build-arg", f"PYTHON_IMAGE={images.python}"]
    with timed("build (docker build, BuildKit)"):
        run(docker_client(), "build", "-q", *args, "-t", "backprop-service:buildkit", ".",
            cwd=tree, env=clean_env(DOCKER_BUILDKIT="1"), timeout=900)
    user = engine("run", "--rm", "--entrypoint", "id", "backprop-service:buildkit").stdout
    assert "uid=10001(backprop) gid=10001(backprop)" in user


def test_every_container_is_healthy_and_workers_publish_nothing(engine, stack):
    wait_ready(stack.url, workers=2)
    for service, count in (("redis", 1), ("api", 1), ("worker", 2)):
        containers = stack.project.containers(service)
        assert len(containers) == count, service
        for container in containers:
            state = json.loads(engine("inspect", container).stdout)[0]
            health = state["State"].get("Health", {}).get("Status")
            assert health in ("healthy", "starting"), (service, health)
            ports = state["NetworkSettings"]["Ports"] or {}
            # Training yields the host's CPU to the API's requests (0: Docker's 1024).
            assert state["HostConfig"]["CpuShares"] == (256 if service == "worker" else 0)
            if service == "api":
                assert ports["8000/tcp"][0]["HostIp"] == "127.0.0.1"
            else:
                assert not ports, f"{service} exposes {ports}"
    assert httpx.get(f"{stack.url}/v1/jobs", timeout=10).status_code == 401


def test_readme_walkthrough_runs_with_the_key(stack):
    with timed("test: README walkthrough with a key"):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c",
                               readme_block("Walkthrough with curl")], capture_output=True,
                              text=True, timeout=300,
                              env=clean_env(API=stack.url, KEY=stack.key))
    assert done.returncode == 0, done.stderr + done.stdout
    job, history, prediction = (json.loads(line) for line in
                                [ln for ln in done.stdout.splitlines() if ln.strip()][-3:])
    assert job["status"] == "succeeded" and job["progress"]["epoch"] == 300
    assert [e["epoch"] for e in history["epochs"]] == [299, 300]
    assert prediction["labels"] == [0, 1, 1, 0]


def test_a_big_json_body_is_decoded_in_a_process_of_the_api_container(engine, stack):
    """JSON of 1 MiB or more is decoded in a decoder process (`python -m anyio.to_process`,
    service/arrays.py): it starts inside the image, as the image's user, and its answer is the
    one a decoder thread gives."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 16)).round(6)
    body = json.dumps({"X": X.tolist(), "y": (X[:, 0] > 0).astype(int).tolist()}).encode()
    assert len(body) > 1 << 20
    with timed("test: a big JSON upload (decoder process)"), stack.client() as api:
        answer = api.post("/v1/datasets", content=body,
                          headers={"Content-Type": "application/json"})
        assert answer.status_code == 201, answer.text[:500]
        assert answer.json()["n_samples"] == 20_000
        [container] = stack.project.containers("api")
        # Its own columns: `docker top`'s default (`ps -ef`) cuts commands at 80 characters.
        processes = engine("top", container, "-eo", "pid,args").stdout
        assert "anyio.to_process" in processes, processes


def test_stopped_worker_checkpoints_and_the_other_resumes(engine, stack):
    epochs = 1000
    with timed("test: docker stop of a busy worker"), stack.client() as api:
        job = submit(api, upload(api), epochs=epochs)
        wait_for(api, job, lambda j: j["progress"]["epoch"] >= 5, 180, "epoch 5")
        [busy] = containers_logging(stack.project, "worker", job, "training started")
        engine("stop", busy, timeout=120)  # SIGTERM, as `docker-compose stop` sends
        said = run(docker_client(), "logs", busy)
        logs = said.stdout + said.stderr
        assert "checkpointed at epoch" in logs and "requeued" in logs, logs[-2000:]
        record = finished(api, job, timeout_s=600)
        assert record["restarts"] == 0, "a graceful stop is not a lost worker"
        assert epochs_recorded(api, job) == list(range(1, epochs + 1))
        resumed = containers_logging(stack.project, "worker", job, "resuming from checkpoint")
        assert len(resumed) == 1 and resumed != [busy], "the other worker resumed it"
    stack.project.compose("up", "-d", "--no-build", "--scale", "worker=2")
    wait_ready(stack.url, workers=2)


def test_down_and_up_keep_every_record(stack):
    with stack.client() as api:
        finished(api, submit(api, upload(api, rows=200, seed=2), epochs=20))
        jobs = api.get("/v1/jobs").json()["jobs"]
        datasets = api.get("/v1/datasets").json()
    with timed("test: down + up"):
        stack.project.compose("down", timeout=300)
        stack.project.compose("up", "-d", "--no-build", "--scale", "worker=2")
        wait_ready(stack.url, workers=2)
    with stack.client() as api:
        assert api.get("/v1/jobs").json()["jobs"] == jobs
        assert api.get("/v1/datasets").json() == datasets
        model = next(j["model_id"] for j in jobs if j["status"] == "succeeded")
        answer = api.post(f"/v1/models/{model}/predict", json={"inputs": [[0] * 16]})
        assert answer.status_code == 200, answer.text


def test_job_rides_out_a_redis_restart(stack):
    epochs = 300
    with timed("test: Redis restart mid-job"), stack.client() as api:
        job = submit(api, upload(api, seed=1), epochs=epochs)
        wait_for(api, job, lambda j: j["progress"]["epoch"] >= 5, 180, "epoch 5")
        stack.project.compose("restart", "redis", timeout=120)
        record = finished(api, job, timeout_s=600)
        assert record["progress"]["epoch"] == epochs
        assert epochs_recorded(api, job) == list(range(1, epochs + 1))
