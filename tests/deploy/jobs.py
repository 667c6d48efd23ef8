"""Jobs against a deployed stack: upload, submit, wait, read the history."""

from __future__ import annotations

import contextlib
import time

import httpx
import numpy as np

from tests.deploy.harness import Project, docker_client, run



def upload(api: httpx.Client, rows: int = 2000, features: int = 16, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).round(4)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    answer = api.post("/v1/datasets", json={"name": "deploy", "X": X.tolist(), "y": y.tolist()})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["id"]


def submit(api: httpx.Client, dataset: str, epochs: int, units: int = 64) -> str:
    answer = api.post("/v1/jobs", json={
        "dataset_id": dataset,
        "network": {"layers": [{"units": units, "activation": "relu"},
                               {"units": units, "activation": "relu"},
                               {"units": 2, "activation": "softmax"}],
                    "loss": "cross_entropy"},
        "training": {"optimizer": "adam", "learning_rate": 0.01, "epochs": epochs,
                     "batch_size": 32, "seed": 0}})
    assert answer.status_code in (200, 201, 202), answer.text
    return answer.json()["id"]


def wait_for(api: httpx.Client, job: str, done, timeout_s: float, what: str) -> dict:
    """Polls the job until done(job) holds; retries while the API or Redis is restarting."""
    deadline = time.monotonic() + timeout_s
    last: dict = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answer = api.get(f"/v1/jobs/{job}")
            if answer.status_code == 200:
                last = answer.json()
                if done(last):
                    return last
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not reach '{what}' in {timeout_s:.0f} s; last: {last}")


def finished(api: httpx.Client, job: str, timeout_s: float = 300) -> dict:
    record = wait_for(api, job, lambda j: j["status"] in ("succeeded", "failed", "canceled"),
                      timeout_s, "finished")
    assert record["status"] == "succeeded", record
    return record


def epochs_recorded(api: httpx.Client, job: str) -> list[int]:
    answer = api.get(f"/v1/jobs/{job}/history")
    assert answer.status_code == 200, answer.text
    return [e["epoch"] for e in answer.json()["epochs"]]


def containers_logging(project: Project, service: str, job: str, phrase: str) -> list[str]:
    """The containers of `service` (running or stopped) with a log line naming `job` and
    saying `phrase`, e.g. "training started" or "resuming from checkpoint"."""
    found = []
    for container in project.compose("ps", "-q", "-a", service).stdout.split():
        said = run(docker_client(), "logs", container, check=False)
        if any(job in line and phrase in line
               for line in (said.stdout + said.stderr).splitlines()):
            found.append(container)
    return found


def wait_ready(url: str, workers: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{url}/readyz", timeout=5)
            last = answer.text
            if answer.status_code == 200 and answer.json().get("workers") == workers:
                return
        time.sleep(1)
    raise AssertionError(f"{url}/readyz never reported {workers} workers; last: {last}")
