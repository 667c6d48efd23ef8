"""The measurements of bench/service.py, one function per table row (or rows)."""
from __future__ import annotations

import io
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import redis
from rq import Worker

from service_procs import api_pids, cpu_seconds, proc_status_mb
from core.queues import SERIALIZER

N_FEATURES = 784
PREDICT_NET = {"layers": [{"units": 512, "activation": "relu"},
                          {"units": 256, "activation": "relu"},
                          {"units": 10, "activation": "softmax"}], "loss": "cross_entropy"}
TINY_NET = {"layers": [{"units": 8, "activation": "relu"}, {"units": 2, "activation": "softmax"}],
            "loss": "cross_entropy"}
FINISHED = {"succeeded", "failed", "canceled"}


# -- data --------------------------------------------------------------------------------------

def features(n: int, seed: int = 0, n_features: int = N_FEATURES) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n_features), dtype=np.float32)


def labelled(n: int, n_features: int = N_FEATURES, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features), dtype=np.float32)
    y = (X @ rng.standard_normal((n_features, classes), dtype=np.float32)).argmax(axis=1)
    return X, y.astype(np.int64)


NUMBERS = ("4 decimals", "float32 reprs")
"""How a client writes its numbers: rounded (~7 characters a number), or a float32 array's
tolist() (~20 characters: the float64 repr of each float32 value)."""


def feature_values(n_rows: int, seed: int = 1, n_features: int = N_FEATURES,
                   numbers: str = NUMBERS[0]) -> list:
    X = features(n_rows, seed, n_features)
    return X.tolist() if numbers == "float32 reprs" else np.round(X.astype(np.float64),
                                                                  4).tolist()


def predict_json(n_rows: int, seed: int = 1, n_features: int = N_FEATURES,
                 numbers: str = NUMBERS[0]) -> bytes:
    """{"inputs": rows}, its numbers written as NUMBERS says (default: 4 decimals per value,
    as a client rounding its floats would send)."""
    return orjson.dumps({"inputs": feature_values(n_rows, seed, n_features, numbers)})


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def upload_npz(api: httpx.Client, X: np.ndarray, y: np.ndarray, name: str) -> str:
    answer = api.post("/v1/datasets", files={"file": (f"{name}.npz", npz_bytes(X=X, y=y))},
                      data={"name": name})
    answer.raise_for_status()
    return answer.json()["id"]


# -- jobs --------------------------------------------------------------------------------------

def submit(api: httpx.Client, dataset_id: str, network: dict, training: dict) -> dict:
    answer = api.post("/v1/jobs", json={"network": network, "training": training,
                                        "dataset_id": dataset_id})
    answer.raise_for_status()
    return answer.json()


def wait_job(api: httpx.Client, job_id: str, timeout_s: float = 600, poll_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        time.sleep(poll_s)
    raise TimeoutError(f"job {job_id} did not finish within {timeout_s} s")


def train_predict_model(api: httpx.Client, tiny: bool = False) -> str:
    """The 784-512-256-10 model (or TINY_NET on 16 inputs), trained through the API for 1 epoch
    on 512 random rows."""
    data = labelled(512, 16, 2) if tiny else labelled(512)
    dataset_id = upload_npz(api, *data, name="predict-model")
    network = TINY_NET if tiny else PREDICT_NET
    job = wait_job(api, submit(api, dataset_id, network, {"epochs": 1})["id"], poll_s=0.1)
    if job["status"] != "succeeded":
        raise RuntimeError(f"training the predict model failed: {job}")
    return job["model_id"]


def input_scaling(stack, model_id: str) -> dict | None:
    """The means and scales the model's preparation ("auto", the default) standardizes its
    inputs with, read from the stack's Redis (the API does not show them), for a peer to do
    the same; None for a model trained without one."""
    from core.store import Store

    store = Store(redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"]), stack.settings.key_prefix)
    record = store.model(None, model_id)
    preparation = None if record.preparation is None else record.preparation.model_dump()
    if preparation is None:
        return None
    columns = preparation["columns"]
    assert all(c["kind"] == "numeric" for c in columns), "the peer standardizes numbers only"
    classes = (preparation.get("target") or {}).get("classes")
    assert classes in (None, list(range(len(classes or [])))), classes  # labels are indices
    return {"mean": [c["mean"] for c in columns], "scale": [c["scale"] for c in columns]}


# -- rows of the table -------------------------------------------------------------------------

def large_predict(api: httpx.Client, model_id: str, reps: int) -> list[list]:
    X = features(10000, seed=2)
    bodies = {"JSON in, JSON out": (predict_json(10000, seed=2), "application/json", ""),
              ".npy in, .npy out": (npy_bytes(X), "application/x-npy", "application/x-npy")}
    times: dict[str, list[float]] = {name: [] for name in bodies}
    for _ in range(reps):
        for name, (body, ctype, accept) in bodies.items():
            headers = {"content-type": ctype, **({"accept": accept} if accept else {})}
            start = time.perf_counter()
            answer = api.post(f"/v1/models/{model_id}/predict", content=body, headers=headers)
            times[name].append(time.perf_counter() - start)
            answer.raise_for_status()
            outputs = (np.load(io.BytesIO(answer.content)) if accept
                       else np.asarray(answer.json()["outputs"]))
            assert outputs.shape == (10000, 10), outputs.shape
    mbps = {n: X.nbytes / 1e6 / statistics.median(t) for n, t in times.items()}
    base = mbps["JSON in, JSON out"]
    return [[n, len(bodies[n][0]) / 1e6, statistics.median(t), mbps[n], f"{mbps[n] / base:.1f}x"]
            for n, t in times.items()]


def npy_bytes(X: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, X)
    return buf.getvalue()


def restart_workers(stack, worker_class: str) -> None:
    """Stop the stack's workers (SIGTERM: they exit 0 and stay stopped) and start as many with
    BACKPROP_WORKER_CLASS=worker_class; returns once they have registered with RQ."""
    if stack.env.get("BACKPROP_WORKER_CLASS", "fork") == worker_class:
        return
    old = list(stack.workers)
    for proc in old:
        proc.send_signal(signal.SIGTERM)
    for proc in old:
        proc.wait(30)
    stack.env["BACKPROP_WORKER_CLASS"] = worker_class
    stack.workers[:] = []
    for _ in old:
        stack.add_worker()
    connection = redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"])
    pids = {p.pid for p in stack.workers}
    deadline = time.monotonic() + 60
    while {w.pid for w in Worker.all(connection=connection, serializer=SERIALIZER)} != pids:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {worker_class} workers did not register within 60 s")
        time.sleep(0.1)


def submit_latency(api: httpx.Client, n_jobs: int) -> list:
    dataset_id = upload_npz(api, *labelled(64, 16, 2), name="tiny")
    waits = []
    for _ in range(n_jobs):
        time.sleep(0.1)  # both workers back in their blocking pop
        job = wait_job(api, submit(api, dataset_id, TINY_NET, {"epochs": 1})["id"])
        if job["status"] != "succeeded":
            raise RuntimeError(f"a tiny job failed: {job}")
        waits.append((job["started_at"] - job["created_at"]) * 1000)
    waits.sort()
    return [n_jobs, statistics.median(waits), waits[min(int(0.99 * len(waits)), len(waits) - 1)],
            waits[-1]]


def fit_overhead(api: httpx.Client, target_s: float, rounds: int) -> list:
    """Epochs chosen so the bare engine takes ~target_s; rounds ordered bare, service, service,
    bare... so a drift in machine load hits both sides alike."""
    import engine

    X, y = labelled(8192, seed=3)
    dataset_id = upload_npz(api, X, y, name="fit")
    training = {"epochs": 1, "batch_size": 64, "learning_rate": 0.01, "optimizer": "sgd"}

    def bare(epochs: int) -> float:
        start = time.perf_counter()
        net = engine.Network(PREDICT_NET, n_inputs=N_FEATURES, seed=0, dtype="float32")
        net.fit(X, y, engine.TrainingSpec(**{**training, "epochs": epochs}))
        return time.perf_counter() - start

    epochs = max(1, round(target_s / bare(1)))
    training["epochs"] = epochs

    def through_service() -> float:
        start = time.time()
        job = wait_job(api, submit(api, dataset_id, PREDICT_NET, training)["id"], poll_s=0.5)
        if job["status"] != "succeeded":
            raise RuntimeError(f"the timed job failed: {job}")
        return job["finished_at"] - start

    bare_s, service_s = [], []
    for r in range(rounds):
        order = (bare_s, service_s) if r % 2 == 0 else (service_s, bare_s)
        for side in order:
            side.append(bare(epochs) if side is bare_s else through_service())
    return [epochs, len(X), sum(bare_s) / rounds, sum(service_s) / rounds,
            f"{sum(service_s) / sum(bare_s):.3f}"]


def tiny_jobs(api: httpx.Client, stack, n_jobs: int) -> list:
    dataset_id = upload_npz(api, *labelled(64, 16, 2, seed=4), name="tiny-many")
    workers = [w.pid for w in stack.workers]
    cpu_before = cpu_seconds(workers)
    first = time.time()
    with ThreadPoolExecutor(4) as pool:  # 4 clients, so submitting is not what we time
        ids = list(pool.map(lambda _: submit(api, dataset_id, TINY_NET, {"epochs": 1})["id"],
                            range(n_jobs)))
    submitted = time.time() - first
    deadline = time.monotonic() + 600
    while True:
        jobs = {j["id"]: j for j in api.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]}
        mine = [jobs[i] for i in ids if i in jobs]
        if len(mine) == n_jobs and all(j["status"] in FINISHED for j in mine):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the tiny jobs did not finish within 600 s")
        time.sleep(0.1)
    seconds = max(j["finished_at"] for j in mine) - first
    cpu_ms = (cpu_seconds(workers) - cpu_before) * 1000 / n_jobs
    ok = sum(j["status"] == "succeeded" for j in mine)
    return [n_jobs, f"{ok}/{n_jobs}", submitted, seconds, n_jobs / seconds, cpu_ms]


# -- uploads and the API's memory --------------------------------------------------------------

def dataset_files(n_rows: int) -> tuple[bytes, bytes]:
    """The same float32 data (pixel-like values k/255) as NPZ and as a CSV with a label column;
    CSV values are the shortest text that reads back as the same float32."""
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (n_rows, N_FEATURES), dtype=np.uint8)
    values = (np.arange(256, dtype=np.float32) / np.float32(255))
    X, y = values[codes], rng.integers(0, 10, n_rows)
    text = np.array([str(v) for v in values])
    lines = [",".join([*(f"f{i}" for i in range(N_FEATURES)), "label"])]
    lines += [",".join(text[row]) + f",{label}" for row, label in zip(codes, y)]
    return npz_bytes(X=X, y=y), ("\n".join(lines) + "\n").encode()


def measured_upload(api: httpx.Client, stack, label: str, mb: float, **request) -> list:
    """POST /v1/datasets with `request`: [label, body MB, s, MB/s, idle RSS, peak RSS,
    peak/body, (peak-idle)/body] of the API process(es); the dataset is deleted after."""
    pids = api_pids(stack)
    idle = max(proc_status_mb(p, "VmRSS") for p in pids)
    for pid in pids:  # "5" resets the peak RSS (VmHWM) to the current RSS
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    start = time.perf_counter()
    answer = api.post("/v1/datasets", timeout=600, **request)
    seconds = time.perf_counter() - start
    answer.raise_for_status()
    peak = max(proc_status_mb(p, "VmHWM") for p in pids)
    api.delete(f"/v1/datasets/{answer.json()['id']}").raise_for_status()
    return [label, mb, seconds, mb / seconds, idle, peak, f"{peak / mb:.2f}",
            f"{(peak - idle) / mb:.2f}"]


def uploads(api: httpx.Client, stack, n_rows: int, tmp: Path) -> list[list]:
    npz, csv = dataset_files(n_rows)
    return [measured_upload(api, stack, name, len(content) / 1e6,
                            files={"file": (f"upload.{name.lower()}", content)},
                            data={"name": f"upload-{name}", **extra})
            for name, content, extra in (("NPZ", npz, {}), ("CSV", csv, {"target": "label"}))]


def json_upload(api: httpx.Client, stack, n_rows: int) -> list:
    """The same kind of data as `uploads` as a JSON body {name, X, y} (values with 4 decimals)."""
    X, y = labelled(n_rows, seed=5)
    body = orjson.dumps({"name": "upload-JSON", "X": np.round(X.astype(np.float64), 4).tolist(),
                         "y": y.tolist()})
    return measured_upload(api, stack, f"JSON, {n_rows} rows", len(body) / 1e6, content=body,
                           headers={"content-type": "application/json"})
