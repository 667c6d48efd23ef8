"""Small helpers shared by the service tests (HTTP only: they see what a client sees)."""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, Worker

from core import fairness, queues
from core.dataset_schema import arrays_schema
from core.records import FINISHED as FINISHED_STATES, DatasetRecord, JobRecord
from core.settings import Settings
from core.store import Store
from service.embedded_redis import free_port
from service.launcher import Stack
from worker.attempts import Attempt

FINISHED = {s.value for s in FINISHED_STATES}
# How long a test waits for a process it started to answer. Generous: with the suite's parallel
# processes and others' work on the same cores, a start can take many times its idle 2-5 s.
START_DEADLINE_S = 120


def wait_for_job(api: httpx.Client, job_id: str, timeout_s: float = 180.0,
                 until: set[str] = FINISHED) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job.get("status") in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout_s} s")
        time.sleep(0.05)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def upload_npz(api: httpx.Client, X: np.ndarray, y: np.ndarray, name: str = "data") -> dict:
    answer = api.post("/v1/datasets", files={"file": (f"{name}.npz", npz_bytes(X=X, y=y))},
                      data={"name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()


def classifier(hidden: int = 16, classes: int = 3, activation: str = "tanh") -> dict:
    return {"layers": [{"units": hidden, "activation": activation},
                       {"units": classes, "activation": "softmax"}],
            "loss": "cross_entropy"}


def blobs(n: int = 150, classes: int = 3, features: int = 4, seed: int = 0):
    """Separable Gaussian blobs: (X float32 (n, features), y int64 (n,))."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = rng.normal(scale=4.0, size=(classes, features))
    X = centers[y] + rng.normal(size=(n, features))
    return X.astype(np.float32), y.astype(np.int64)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def own_stack(root: Path, workers: int = 1, extra_env: dict[str, str] | None = None) -> Stack:
    """A stack of its own (embedded Valkey under root/data, logs in root/logs) for tests that
    change settings or break things, so the shared session stack is never affected."""
    stack = Stack(Settings(redis_url=None, data_dir=root / "data"), "127.0.0.1", free_port(),
                  workers=workers, log_dir=root / "logs", extra_env=extra_env
                  ).start(ready_timeout_s=START_DEADLINE_S)
    stack.logs = root / "logs"
    return stack


def scrape(api: httpx.Client) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape of /metrics."""
    answer = api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def module_stack(name: str, **kwargs):
    """A module-scoped `stack` fixture: own_stack(tmp/name, **kwargs), stopped after the
    module. Use as `stack = module_stack("name")`, with `api = module_client()`."""
    @pytest.fixture(scope="module")
    def stack(tmp_path_factory):
        running = own_stack(Path(tmp_path_factory.mktemp(name)), **kwargs)
        yield running
        running.stop()
    return stack


def module_client(timeout: float = 120):
    """A module-scoped `api` fixture: an httpx client of the module's `stack`."""
    @pytest.fixture(scope="module")
    def api(stack):
        with httpx.Client(base_url=stack.url, timeout=timeout) as client:
            yield client
    return api


def trained_records(api: httpx.Client, X: np.ndarray, y: np.ndarray, network: dict,
                    epochs: int = 2) -> dict:
    """Upload (X, y), train `network` on it to success: {dataset_id, job_id, model_id}."""
    dataset = api.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=y))})
    assert dataset.status_code == 201, dataset.text
    job = api.post("/v1/jobs", json={"network": network, "dataset_id": dataset.json()["id"],
                                     "training": {"epochs": epochs}})
    assert job.status_code == 202, job.text
    done = wait_for_job(api, job.json()["id"])
    assert done["status"] == "succeeded", done
    return {"dataset_id": dataset.json()["id"], "job_id": done["id"],
            "model_id": done["model_id"]}


# -- API processes of a test's own, their logs, and what reached Redis -----------------------------
def start_api(env: dict, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """`backprop api` alone on a free port with `env`, once it answers /healthz: (process, url)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "api", "--port", str(port),
                             "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the API exited with status {proc.returncode} before it "
                                 "answered /healthz")
        if time.monotonic() > deadline:
            stop_api(proc)  # never left running after the test
            raise AssertionError(f"the API did not answer /healthz in {START_DEADLINE_S} s")
        time.sleep(0.1)


def stop_api(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def log_lines(stack, predicate, timeout_s: float = 5.0) -> list[dict]:
    """The API's JSON log lines that match, waiting a little for them to be written."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = []
        for line in (stack.logs / "api.log").read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and predicate(entry):
                lines.append(entry)
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@contextlib.contextmanager
def redis_commands(url: str):
    """The commands (as text) that the Redis/Valkey server at `url` runs while the block runs,
    from all its clients (MONITOR); complete once the block has ended."""
    client = redis.Redis.from_url(url)
    commands: list[str] = []
    watching, end = threading.Event(), f"end-of-watch-{uuid.uuid4().hex}"

    def watch():
        with client.monitor() as monitor:
            watching.set()
            for seen in monitor.listen():
                if end in seen["command"]:
                    return
                commands.append(seen["command"])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert watching.wait(10), "MONITOR did not start"
    try:
        yield commands
    finally:
        client.echo(end)
        watcher.join(10)
        assert not watcher.is_alive(), "MONITOR did not see the end of the watch"


def model_reads(commands: list[str], model_id: str) -> list[str]:
    """The commands that read the model's own hash (its tenant, meta or weights)."""
    return [c for c in commands if c.split(" ")[0].upper() in ("HGET", "HGETALL", "HMGET")
            and f":model:{model_id}" in c]


def served_from_cache(redis_url: str, api: httpx.Client, model_id: str, rows: list) -> bool:
    """Whether a predict of `rows` was answered (200) from the process's cache: without any
    read of the model in Redis."""
    with redis_commands(redis_url) as commands:
        answer = api.post(f"/v1/models/{model_id}/predict", json={"inputs": rows})
    assert answer.status_code == 200, answer.text
    return not model_reads(commands, model_id)


# -- records written the way the API and the workers write them (tests that play either) ---------
def job_record(tenant: str = "t", epochs: int = 10, **fields) -> JobRecord:
    """The one way tests make a job record: as the API does at submit (fields override)."""
    fields.setdefault("network", classifier(hidden=8, classes=3))
    fields.setdefault("training", {"epochs": epochs})
    fields.setdefault("timeout_s", 60)
    return JobRecord(tenant=tenant, epochs=epochs, **fields)


def dataset_record(dataset_id: str, tenant: str, created_at: float, X: np.ndarray,
                   y: np.ndarray) -> DatasetRecord:
    """A dataset record of arrays X, y, as an upload of them writes it."""
    return DatasetRecord(id=dataset_id, tenant=tenant, created_at=created_at,
                         n_samples=len(y), n_features=X.shape[1],
                         table_schema=arrays_schema(X, y, max_categories=1000))


def private_settings(prefix: str, **fields) -> Settings:
    """Settings under a key prefix of the test's own, with queues no session worker serves,
    so jobs it queues stay where the test put them."""
    return Settings(key_prefix=prefix, queue=f"{prefix}-nobody-listens",
                    gpu_queue=f"{prefix}-gpu-nobody-listens", **fields)


def private_store(settings: Settings) -> Store:
    return Store(queues.connect(settings), settings.key_prefix)


def clear(store: Store, settings: Settings) -> None:
    """Remove what a test wrote under its prefix and queues."""
    for device in ("cpu", "gpu"):
        queues.queue_for(store.r, settings, device).empty()
    for key in store.r.scan_iter(match=f"{settings.key_prefix}:*"):
        store.r.delete(key)


def submitted(store: Store, settings: Settings, job: JobRecord | None = None,
              inline: tuple[np.ndarray, np.ndarray] | None = None) -> JobRecord:
    """Store and queue (or backlog) a job as the API's submit does."""
    return fairness.submit(store, settings, job or job_record(),
                           Store.inline_blobs(*inline) if inline is not None else None)


def started(store: Store, settings: Settings, job: JobRecord, worker: str = "w1") -> Attempt:
    """Attempt job.attempt of `job`, started as a worker starts it (its RQ job popped)."""
    if job.rq_id:
        queues.take_back_queued(store.r, settings, job.device, job.rq_id)
    attempt = Attempt(store, settings, job, worker)
    attempt.start(worker=worker)
    return attempt


@contextlib.contextmanager
def idle_gpu_worker(redis_url: str, queue: str = "training-gpu") -> Iterator[Worker]:
    """A worker on the GPU queue as RQ registers one, that takes no job (as a GPU worker busy
    for as long as the test runs): GPU jobs are accepted (a worker serves their queue) and
    stay queued, without CuPy. Unregistered on exit."""
    connection = redis.Redis.from_url(redis_url)
    worker = Worker([Queue(queue, connection=connection)], connection=connection,
                    name=f"idle-gpu-{secrets.token_hex(4)}")
    worker.register_birth()
    try:
        yield worker
    finally:
        worker.register_death()
