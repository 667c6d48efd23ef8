#!/usr/bin/env python
"""The service end to end on a GPU machine: embedded Valkey, `backprop api`, one worker on the
GPU queue (`backprop worker --queues training-gpu`) and one on the CPU queue. A job with
"device": "gpu" trains; its history and model are stored; predict answers the same labels as
its twin trained on the CPU from the same seed and data.

    python bench/gpu_service.py [--logs DIR]    (on a machine with CuPy and a GPU)
    python bench/gpu_service.py --dry-run        (anywhere: the GPU worker gets a NumPy
                                                  stand-in for CuPy on its import path)
Exits 1 when a check fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gpu_common import ROOT, Checks

STAND_IN = '''"""A NumPy stand-in for CuPy (bench/gpu_service.py --dry-run)."""
import types
import numpy as _np

def __getattr__(name):
    return getattr(_np, name)

asnumpy = _np.asarray
cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
'''
NETWORK = {"layers": [{"units": 32, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
           "loss": "cross_entropy"}
TRAINING = {"optimizer": "adam", "learning_rate": 0.01, "epochs": 8, "batch_size": 32,
            "validation_split": 0.2, "seed": 3}


def blobs(n: int = 1500, d: int = 16, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    return centres[y] + rng.standard_normal((n, d)), y


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} not within {timeout_s:.0f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--logs", type=Path, help="folder for the processes' logs (default: temp)")
    args = p.parse_args()
    import httpx

    from service.embedded_redis import EmbeddedValkey, free_port

    work = Path(tempfile.mkdtemp(prefix="gpu-service-"))
    logs = args.logs or work
    logs.mkdir(parents=True, exist_ok=True)
    valkey = EmbeddedValkey(work / "valkey").start()
    port = free_port()
    path = [ROOT, os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "BACKPROP_REDIS_URL": valkey.url, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, path))}
    gpu_env = dict(env)
    if args.dry_run:
        (work / "stand_in" / "cupy").mkdir(parents=True)
        (work / "stand_in" / "cupy" / "__init__.py").write_text(STAND_IN)
        gpu_env["PYTHONPATH"] = os.pathsep.join([str(work / "stand_in"), env["PYTHONPATH"]])
    cli = [sys.executable, "-m", "service.cli"]
    procs = {}
    for name, argv, proc_env in (
            ("api", [*cli, "api", "--port", str(port)], env),
            ("worker-gpu", [*cli, "worker", "--queues", "training-gpu"], gpu_env),
            ("worker-cpu", [*cli, "worker"], env)):
        log = open(logs / f"{name}.log", "w")
        procs[name] = subprocess.Popen(argv, env=proc_env, stdout=log, stderr=subprocess.STDOUT,
                                       cwd=ROOT)
    check = Checks()
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        def ready():
            try:
                return api.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "the API and a worker")
        print(f"API on port {port}, Valkey at {valkey.url}; workers on training-gpu and "
              "training", flush=True)
        X, y = blobs()
        dataset = api.post("/v1/datasets", json={"name": "blobs", "X": X.tolist(),
                                                 "y": y.tolist()})
        check("dataset uploaded", dataset.status_code == 201, f"{dataset.status_code}")
        jobs = {}
        for device in ("gpu", "cpu"):
            answer = api.post("/v1/jobs", json={
                "dataset_id": dataset.json()["id"], "network": NETWORK, "training": TRAINING,
                "device": device, "dtype": "float64", "seed": 7})
            check(f"{device} job accepted", answer.status_code == 202, f"{answer.status_code}"
                  if answer.status_code == 202 else f"{answer.status_code} {answer.text[:300]}")
            jobs[device] = answer.json()["id"]
        started = time.monotonic()
        done = {}
        for device, job_id in jobs.items():
            done[device] = wait_for(
                lambda: (j := api.get(f"/v1/jobs/{job_id}").json())["status"]
                in ("succeeded", "failed", "canceled") and j, 120, f"the {device} job")
        gpu_job, cpu_job = done["gpu"], done["cpu"]
        check("gpu job trained", gpu_job["status"] == "succeeded" and gpu_job["device"] == "gpu",
              f"status {gpu_job['status']} on {gpu_job['device']} in "
              f"{gpu_job['finished_at'] - gpu_job['started_at']:.1f} s"
              if gpu_job.get("finished_at") and gpu_job.get("started_at")
              else f"{gpu_job['status']}: {gpu_job.get('error')}")
        check("cpu twin trained", cpu_job["status"] == "succeeded",
              f"status {cpu_job['status']} ({time.monotonic() - started:.1f} s for both)")
        history = {d: api.get(f"/v1/jobs/{jobs[d]}/history").json()["epochs"] for d in jobs}
        errors = [abs(g["loss"] - c["loss"]) / abs(c["loss"])
                  for g, c in zip(history["gpu"], history["cpu"])]
        check("gpu history stored", len(history["gpu"]) == TRAINING["epochs"]
              and max(errors) <= 1e-9,
              f"{len(history['gpu'])} epochs; last loss {history['gpu'][-1]['loss']:.6f}, "
              f"val_metric {history['gpu'][-1]['val_metric']:.3f}; max rel diff to the CPU "
              f"twin's losses {max(errors):.1e}")
        model = api.get(f"/v1/models/{gpu_job['model_id']}")
        check("gpu model stored", model.status_code == 200
              and model.json()["n_inputs"] == X.shape[1], f"{model.status_code}")
        X_new, _ = blobs(n=400, seed=1)
        answers = {d: api.post(f"/v1/models/{done[d]['model_id']}/predict",
                               json={"inputs": X_new.tolist()}).json() for d in jobs}
        same = answers["gpu"]["labels"] == answers["cpu"]["labels"]
        diff = float(np.max(np.abs(np.array(answers["gpu"]["outputs"])
                                   - np.array(answers["cpu"]["outputs"]))))
        check("predict: GPU-trained labels = CPU twin's", same and diff <= 1e-6,
              f"{len(answers['gpu']['labels'])} rows, labels "
              f"{'equal' if same else 'DIFFER'}, outputs max abs diff {diff:.1e}")
    except Exception as exc:                    # report, then show the logs below
        check("end to end", False, f"{type(exc).__name__}: {exc}")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        valkey.stop()
    if check.failed:
        for name in procs:
            print(f"\n--- {name}.log (end)\n"
                  + "\n".join((logs / f"{name}.log").read_text().splitlines()[-25:]))
    shutil.rmtree(work, ignore_errors=True)     # Valkey's files, and the logs unless --logs
    return check.summary("gpu_service")


if __name__ == "__main__":
    sys.exit(main())
