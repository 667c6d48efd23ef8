"""Bounded load test on loopback: the stack as `backprop up` starts it (embedded Valkey, the API,
2 training workers), then

1. 200 concurrent predict requests (asyncio + httpx), each timed;
2. 50 small training jobs queued at once and trained by the 2 workers;
3. every job deleted, then a scan of the whole Valkey for anything a deleted job left behind.

It checks that every request was answered 200, every job succeeded, and no key survives, and
prints throughput and p50/p99 latency. Counts and time are fixed: it stops by itself (or fails
at --timeout). Run: .venv/bin/python bench/load.py [--predicts 200] [--jobs 50] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import queues  # noqa: E402
from core.keys import Keys  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import Store  # noqa: E402
from service.embedded_redis import free_port  # noqa: E402
from service.launcher import Stack  # noqa: E402

FINISHED = {"succeeded", "failed", "canceled"}
N_FEATURES, N_CLASSES = 8, 3
NETWORK = {"layers": [{"units": 16, "activation": "relu"},
                      {"units": N_CLASSES, "activation": "softmax"}], "loss": "cross_entropy"}


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    X = rng.normal(scale=3.0, size=(N_CLASSES, N_FEATURES))[y] + rng.normal(size=(n, N_FEATURES))
    return X.round(4), y


def cpu_seconds(root_pid: int) -> float:
    """CPU time of a process and its descendants (finished children included), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid, seconds in times.items():
        ancestor = pid
        while ancestor not in (0, 1, root_pid):
            ancestor = parents.get(ancestor, 0)
        total += seconds if ancestor == root_pid else 0.0
    return total


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1)}


async def wait_jobs(client: httpx.AsyncClient, ids: list[str], deadline: float) -> dict:
    """Poll until every job has finished; returns id -> final record."""
    done: dict[str, dict] = {}
    while len(done) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids) - len(done)} jobs unfinished at the deadline")
        pending = [i for i in ids if i not in done]
        for answer in await asyncio.gather(*(client.get(f"/v1/jobs/{i}") for i in pending)):
            job = answer.json()
            if job["status"] in FINISHED:
                done[job["id"]] = job
        await asyncio.sleep(0.1)
    return done


async def train_model(client: httpx.AsyncClient, deadline: float) -> str:
    X, y = blobs(300, seed=0)
    answer = await client.post("/v1/jobs", json={"network": NETWORK, "data": {
        "X": X.tolist(), "y": y.tolist()}, "training": {"epochs": 20, "optimizer": "adam"}})
    answer.raise_for_status()
    job = (await wait_jobs(client, [answer.json()["id"]], deadline))[answer.json()["id"]]
    assert job["status"] == "succeeded", job
    return job["model_id"]


async def predict_load(client: httpx.AsyncClient, model_id: str, n: int,
                       concurrency: int, api_pid: int) -> dict:
    """n predict requests, at most `concurrency` in flight, each of 1-8 rows."""
    X, _ = blobs(8 * n, seed=1)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(i: int) -> None:
        rows = X[8 * i: 8 * i + 1 + i % 8].tolist()
        async with gate:
            start = time.perf_counter()
            answer = await client.post(f"/v1/models/{model_id}/predict", json={"inputs": rows})
            latencies.append(time.perf_counter() - start)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        if answer.status_code == 200:
            assert len(answer.json()["labels"]) == len(rows)

    api_cpu, client_cpu = cpu_seconds(api_pid), time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    # CPU per request of each side: on a small machine the client may be the bottleneck.
    api_cpu, client_cpu = cpu_seconds(api_pid) - api_cpu, time.process_time() - client_cpu
    return {"requests": n, "concurrency": concurrency, "statuses": statuses,
            "wall_s": round(wall, 2), "requests_per_s": round(n / wall, 1),
            **percentiles(latencies), "api_cpu_ms_per_request": round(api_cpu / n * 1000, 2),
            "client_cpu_ms_per_request": round(client_cpu / n * 1000, 2)}


async def job_load(client: httpx.AsyncClient, store: Store, n: int, deadline: float) -> dict:
    """n small jobs submitted at once; returns timings and how the workers shared them."""
    X, y = blobs(200, seed=2)
    dataset = await client.post("/v1/datasets", json={"name": "load", "X": X.tolist(),
                                                      "y": y.tolist()})
    dataset.raise_for_status()
    body = {"network": NETWORK, "dataset_id": dataset.json()["id"],
            "training": {"epochs": 5, "batch_size": 32}}
    start = time.perf_counter()
    answers = await asyncio.gather(*(client.post("/v1/jobs", json={**body, "seed": i})
                                     for i in range(n)))
    submit_s = time.perf_counter() - start
    bad = [a.status_code for a in answers if a.status_code != 202]
    assert not bad, f"job submissions refused: {bad}"
    ids = [a.json()["id"] for a in answers]
    done = await wait_jobs(client, ids, deadline)
    wall = time.perf_counter() - start
    outcome: dict[str, int] = {}
    for job in done.values():
        outcome[job["status"]] = outcome.get(job["status"], 0) + 1
    per_worker: dict[str, int] = {}
    for job_id in ids:
        worker = getattr(store.job(None, job_id), "worker", None) or "?"
        per_worker[worker] = per_worker.get(worker, 0) + 1
    turnaround = [done[i]["finished_at"] - done[i]["created_at"] for i in ids]
    return {"jobs": n, "outcome": outcome, "per_worker": sorted(per_worker.values()),
            "submit_s": round(submit_s, 2), "wall_s": round(wall, 2),
            "jobs_per_s": round(n / wall, 2), "turnaround": percentiles(turnaround),
            "ids": ids, "model_ids": [done[i]["model_id"] for i in ids],
            "dataset_id": dataset.json()["id"]}


async def delete_all(client: httpx.AsyncClient, jobs: dict) -> dict[int, int]:
    answers = await asyncio.gather(*(client.delete(f"/v1/jobs/{i}") for i in jobs["ids"]))
    answers.append(await client.delete(f"/v1/datasets/{jobs['dataset_id']}"))
    statuses: dict[int, int] = {}
    for answer in answers:
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    return statuses


def leftovers(r: redis.Redis, keys: Keys, tenant: str, jobs: dict) -> list[str]:
    """Every Redis key, or member of a set, list or hash, that still names a deleted job, its
    RQ attempts or its model; plus any `{prefix}:job:*` key at all for those ids."""
    names = set(jobs["ids"]) | set(jobs["model_ids"]) | {jobs["dataset_id"]}
    found = []
    for key in r.scan_iter(count=1000):
        text = key.decode(errors="replace")
        kind = r.type(key)
        members = (r.zrange(key, 0, -1) if kind == b"zset" else
                   list(r.smembers(key)) if kind == b"set" else
                   r.lrange(key, 0, -1) if kind == b"list" else
                   list(r.hkeys(key)) if kind == b"hash" else [])
        blob = text + " " + " ".join(m.decode(errors="replace") for m in members)
        if any(name in blob for name in names):
            found.append(f"{text} ({kind.decode()})")
    for pattern in (keys.job("*"), keys.model("*"), keys.dataset("*")):
        for key in r.scan_iter(match=pattern, count=1000):
            if any(name in key.decode() for name in names):
                found.append(key.decode())
    return sorted(set(found))


async def run(args: argparse.Namespace, stack: Stack, store: Store) -> dict:
    deadline = time.monotonic() + args.timeout
    limits = httpx.Limits(max_connections=args.concurrency + 10,
                          max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as client:
        model_id = await train_model(client, deadline)
        predicts = await predict_load(client, model_id, args.predicts, args.concurrency,
                                      stack.api.pid)
        jobs = await job_load(client, store, args.jobs, deadline)
        deletes = await delete_all(client, jobs)
    left = leftovers(store.r, store.keys, "public", jobs)
    return {"predict": predicts, "jobs": {k: v for k, v in jobs.items()
                                          if k not in ("ids", "model_ids", "dataset_id")},
            "deletes": deletes, "keys_left": left}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predicts", type=int, default=200, help="predict requests")
    parser.add_argument("--concurrency", type=int, default=200, help="predicts in flight")
    parser.add_argument("--jobs", type=int, default=50, help="training jobs")
    parser.add_argument("--workers", type=int, default=2, help="training worker processes")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn processes")
    parser.add_argument("--timeout", type=float, default=300, help="give up after (s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(redis_url=None, data_dir=Path(tmp))
        stack = Stack(settings, "127.0.0.1", free_port(), workers=args.workers,
                      api_workers=args.api_workers, log_dir=Path(tmp) / "logs",
                      extra_env={"BACKPROP_ACCESS_LOG": "false"})
        stack.start()
        try:
            store = Store(queues.connect(Settings(redis_url=stack.env["BACKPROP_REDIS_URL"])),
                          settings.key_prefix)
            result = asyncio.run(asyncio.wait_for(run(args, stack, store), args.timeout))
        finally:
            stack.stop()
    predicts, jobs = result["predict"], result["jobs"]
    print(f"predict: {predicts['requests']} requests, {predicts['concurrency']} in flight: "
          f"{predicts['requests_per_s']} req/s, p50 {predicts['p50_ms']} ms, "
          f"p99 {predicts['p99_ms']} ms, statuses {predicts['statuses']}; CPU per request: "
          f"API {predicts['api_cpu_ms_per_request']} ms, this client "
          f"{predicts['client_cpu_ms_per_request']} ms")
    print(f"jobs:    {jobs['jobs']} jobs on {args.workers} workers (shares "
          f"{jobs['per_worker']}): {jobs['jobs_per_s']} jobs/s, all done in {jobs['wall_s']} s, "
          f"turnaround p50 {jobs['turnaround']['p50_ms'] / 1000:.2f} s, "
          f"p99 {jobs['turnaround']['p99_ms'] / 1000:.2f} s, outcome {jobs['outcome']}")
    print(f"delete:  statuses {result['deletes']}; keys left behind: {len(result['keys_left'])}")
    print("BENCH " + json.dumps(result))
    ok = (predicts["statuses"] == {200: predicts["requests"]}
          and jobs["outcome"] == {"succeeded": jobs["jobs"]}
          and set(result["deletes"]) == {204} and not result["keys_left"])
    if not ok:
        print("FAILED: not every request answered 200, job succeeded, or key was removed",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
