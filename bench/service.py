#!/usr/bin/env python
"""Speed of the service against a peer and the limit of its own stack, side by side in one run.

    .venv/bin/python bench/service.py                  # full run (about 10 minutes)
    .venv/bin/python bench/service.py --quick          # smoke run of every row (a few minutes)
    .venv/bin/python bench/service.py --only predict   # the predict rows alone
    .venv/bin/python bench/service.py --api-workers 2  # uvicorn processes for API and bare app

It starts the stack as `backprop up` does (service.launcher.Stack: embedded Valkey, the API,
2 RQ workers, each with cores / 2 BLAS threads) and, beside it, bench/bare_app.py: a FastAPI
endpoint run through the same service.cli.serve (uvicorn options, process count) that reads
the body and answers a canned payload of the predict response's exact size: the framework's
ceiling. The peer is MLServer (bench/mlserver_peer.py; its own venv, .venv-mlserver, made on
first use) serving the same weights as a scikit-learn MLPClassifier (after a StandardScaler
with the moments our model's preparation standardizes its inputs with), twice: as shipped
(parallel_workers=1, inference in a process of its own; with --api-workers N, N of them) and
inferring in its HTTP process (parallel_workers=0); each inferring process gets the BLAS
threads of one of our API processes (BACKPROP_API_BLAS_THREADS, 1). Load comes from wrk (Debian
package `wrk`); its CPU use (1.0 = its one thread busy) is printed beside each figure, with
the server's CPU per request. Rows, all from one run:

- predict (784-512-256-10, trained through the API): req/s, p50/p99 for 1 and 64 JSON rows,
  our /v1 predict and /v2 infer against MLServer (sent /v2's Open Inference Protocol body) and
  the bare endpoint, rounds interleaved; each ratio is the median of per-round ratios; a 1-row
  predict of a 16-8-2 model shows the service's own overhead;
- 10000-row predict: .npy body and answer vs JSON, in MB/s of float32 input;
- a ~10 s training through the service / the same fit with the bare engine in this process
  (same data, spec and BLAS threads), rounds ordered bare, service, service, bare;
- submit-to-running (started_at - created_at) with idle workers, and 200 one-epoch jobs on
  2 workers, for BACKPROP_WORKER_CLASS=fork (RQ's Worker) and =simple (SimpleWorker);
- a 60000 x 784 float32 upload as NPZ and CSV: MB/s and the API process's peak RSS (VmHWM,
  reset before each upload through /proc/PID/clear_refs); the same for 5000 rows as JSON;
- a closing table of the targets (issues 6 and 15), met or not.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import service_cases as cases  # noqa: E402  (bench/, after the path is set)
import wrk_load  # noqa: E402
from mlserver_peer import VERSION, MLServer  # noqa: E402
from service_procs import BareApp, api_pids, cpu_seconds, server_pids  # noqa: E402

from core.blas_threads import limit_blas_threads  # noqa: E402
from core.settings import Settings  # noqa: E402
from service.embedded_redis import free_port  # noqa: E402
from service.launcher import Stack  # noqa: E402

FULL = {"rounds": 5, "wrk_s": 4.0, "large_reps": 3, "latency_jobs": 30, "fit_s": 10.0,
        "fit_rounds": 2, "tiny_jobs": 200, "upload_rows": 60000,
        "json_rows": 5000}
QUICK = {"rounds": 2, "wrk_s": 2, "large_reps": 1, "latency_jobs": 10, "fit_s": 3.0,
         "fit_rounds": 1, "tiny_jobs": 40, "upload_rows": 15000,
         "json_rows": 2000}
BODY_LIMIT = 2 * 1024 ** 3  # the CSV of 60000 x 784 floats is ~0.5 GB
JSON, NPZ = {"content-type": "application/json"}, "application/x-npz"
TARGET_PEER = "MLServer in-process"
"""The peer the predict targets are measured against (issue 23): MLServer inferring in its HTTP
process (parallel_workers=0), its faster setting on the bench's 2-core machine."""


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def oip_json(n_rows: int, numbers: str = cases.NUMBERS[0]) -> bytes:
    """The Open Inference Protocol request of the same rows as cases.predict_json(n_rows)."""
    rows = cases.feature_values(n_rows, 1, numbers=numbers)
    return orjson.dumps({"inputs": [{"name": "input", "shape": [n_rows, len(rows[0])],
                                     "datatype": "FP32", "data": sum(rows, [])}]})


def same_answers(v2_url: str, peer_url: str, body: bytes) -> float:
    """Largest difference between our /v2 outputs and MLServer's predict_proba (same rows)."""
    ours, theirs = (httpx.post(url, content=body, headers=JSON, timeout=60)
                    for url in (v2_url, peer_url))
    ours.raise_for_status()
    theirs.raise_for_status()
    return float(np.abs(np.asarray(ours.json()["outputs"][0]["data"]) -
                        np.asarray(theirs.json()["outputs"][0]["data"])).max())


def predict_section(cfg: dict, api: httpx.Client, stack: Stack, bare: BareApp,
                    peers: dict[str, MLServer], model_id: str, targets: list,
                    numbers_written: list[str]) -> None:
    """Our /v1 and /v2 against MLServer (each config in `peers`) and the bare app, wrk rounds
    interleaved; the targets (issues 15 and 23) are measured against TARGET_PEER."""
    tiny_id = cases.train_predict_model(api, tiny=True)
    v1, v2 = f"{stack.url}/v1/models/{{}}/predict", f"{stack.url}/v2/models/{{}}/infer"
    contenders: dict[str, tuple[str, dict[str, tuple[str, bytes]]]] = {}  # case: (label, ..)
    compared = []                           # the cases that MLServer is sent too
    for numbers in numbers_written:
        for rows in (1, 64):
            name = f"rows{rows}, {numbers}"
            contenders[name] = (f"{rows} row{'s' if rows > 1 else ''}, {numbers}", {
                "/v1 predict": (v1.format(model_id), cases.predict_json(rows, numbers=numbers)),
                "/v2 infer": (v2.format(model_id), oip_json(rows, numbers))})
            compared.append(name)
    contenders["tiny1"] = ("1 row, 16-8-2", {"/v1 predict": (
        v1.format(tiny_id), cases.predict_json(1, n_features=16))})
    differences = []
    for name in compared:
        label, urls = contenders[name]
        for who, peer in peers.items():
            urls[who] = (peer.url, urls["/v2 infer"][1])     # the same OIP body as /v2
            gap = same_answers(urls["/v2 infer"][0], *urls[who])
            differences.append(f"{label}, {who} {gap:.1e}")
    for name, (_, urls) in contenders.items():  # bare answers /v1's bytes
        url, body = urls["/v1 predict"]
        answer = api.post(url, content=body, headers=JSON)
        answer.raise_for_status()
        slug = name.replace(", ", "-").replace(" ", "_")
        (bare.folder / f"{slug}.json").write_bytes(answer.content)
        urls["bare FastAPI"] = (f"{bare.url}/bare/{slug}", body)
    bare.start()
    pids = {"bare FastAPI": server_pids(bare.proc, bare.workers),
            **{who: peer.pids() for who, peer in peers.items()}}
    results: dict[tuple[str, str], list[dict]] = {}
    for _ in range(cfg["rounds"]):
        for name, (_, urls) in contenders.items():
            for who, (url, body) in urls.items():
                watched = pids.get(who) or api_pids(stack)
                cpu = cpu_seconds(watched)
                run = wrk_load.run(url, body, "application/json", cfg["wrk_s"], connections=8)
                run["server_us"] = (cpu_seconds(watched) - cpu) / run["requests"] * 1e6
                results.setdefault((name, who), []).append(run)
    bases = [*peers, "bare FastAPI"]
    rows = []
    for name, (label, urls) in contenders.items():
        def ratio(who: str, base: str) -> float | None:  # median of per-round ratios
            if base not in urls or who in bases:
                return None
            return statistics.median(a["rps"] / b["rps"] for a, b in
                                     zip(results[(name, who)], results[(name, base)]))

        for who in urls:
            runs = results[(name, who)]
            med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
            found = [ratio(who, base) for base in bases]
            rows.append([f"{label}, {who}", med("rps"), med("p50_ms"), med("p99_ms"),
                         med("server_us"), med("cpu"),
                         *("" if r is None else f"{r:.2f}" for r in found)])
            versus = found[bases.index(TARGET_PEER)] if TARGET_PEER in bases else None
            if versus is not None:
                goal = 2.0 if name.startswith("rows1,") else 1.3
                targets.append([f"{who} {label} / {TARGET_PEER}, req/s", f">= {goal}",
                                f"{versus:.2f}", versus >= goal])
        if name == f"rows1, {cases.NUMBERS[0]}":
            found = ratio("/v1 predict", "bare FastAPI")
            targets.append(["/v1 predict 1 row / bare FastAPI, req/s", ">= 0.8", f"{found:.2f}",
                            found >= 0.8])
    print_table(f"Predict, 784-512-256-10 (and a 16-8-2 model: the service's own overhead), "
                f"JSON, wrk -t1 -c8 (medians of {cfg['rounds']} interleaved rounds of "
                f"{cfg['wrk_s']:g} s); MLServer {VERSION} + mlserver-sklearn serving the same "
                f"weights as an MLPClassifier (after a StandardScaler with our preparation's "
                f"moments), sent /v2's OIP JSON body: " +
                ", ".join(f"{who} parallel_workers={peer.parallel_workers}"
                          for who, peer in peers.items()),
                ["case", "req/s", "p50 ms", "p99 ms", "server CPU us/req", "wrk CPU",
                 *(f"vs {base}" for base in bases)], rows)
    print("  largest |/v2 output - MLServer predict_proba|: " + "; ".join(differences))


def jobs_section(cfg: dict, api: httpx.Client, stack: Stack, only: set, targets: list) -> None:
    """Submit-to-running and tiny jobs, for each RQ worker class in turn."""
    latency, tiny = [], []
    for worker_class in ("fork", "simple"):  # RQ's Worker (the default), then SimpleWorker
        cases.restart_workers(stack, worker_class)
        if "latency" in only:
            latency.append([worker_class] + cases.submit_latency(api, cfg["latency_jobs"]))
        if "tiny" in only:
            tiny.append([worker_class] + cases.tiny_jobs(api, stack, cfg["tiny_jobs"]))
    cases.restart_workers(stack, "fork")
    if latency:
        print_table("Submit-to-running (started_at - created_at), idle workers, by "
                    "BACKPROP_WORKER_CLASS", ["worker class", "jobs", "p50 ms", "p99 ms",
                                              "max ms"], latency)
        for row in latency:
            targets.append([f"submit-to-running p50 ({row[0]})", "< 50 ms",
                            f"{row[2]:.1f} ms", row[2] < 50])
    if tiny:
        print_table("One-epoch jobs on 2 workers, by BACKPROP_WORKER_CLASS",
                    ["worker class", "jobs", "succeeded", "submitted in s", "all done in s",
                     "jobs/s", "worker CPU ms/job"], tiny)
        for row in tiny:
            targets.append([f"tiny jobs all succeeded ({row[0]})", f"{row[1]}/{row[1]}",
                            f"{row[2]}, {row[5]:.1f} jobs/s", row[2] == f"{row[1]}/{row[1]}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run of every row")
    parser.add_argument("--api-workers", type=int, default=1,
                        help="uvicorn processes, for the API and the bare app alike")
    parser.add_argument("--blas-threads", type=int,
                        help="BLAS threads of each training worker and of the bare engine.fit "
                             "it is compared with (BACKPROP_WORKER_BLAS_THREADS; 0 = every "
                             "core; default: the Stack's, cores / workers)")
    parser.add_argument("--numbers", default=",".join(cases.NUMBERS),
                        help="how predict bodies write their numbers, comma-separated: "
                             f"{', '.join(cases.NUMBERS)}")
    parser.add_argument("--only", default="predict,large,fit,latency,tiny,upload",
                        help="comma-separated sections to run")
    args = parser.parse_args()
    cfg, only = (QUICK if args.quick else FULL), set(args.only.split(","))
    if not wrk_load.available():
        sys.exit("wrk is not installed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    settings = Settings(redis_url=None, data_dir=tmp / "data", key_prefix="bench")
    env = {"BACKPROP_MAX_BODY_BYTES": str(BODY_LIMIT), "BACKPROP_KEY_PREFIX": "bench",
           "BACKPROP_PREDICT_MEMORY_BYTES": str(BODY_LIMIT),  # the 10000-row JSON predict
           "BACKPROP_DATA_DIR": str(tmp / "data")}
    if args.blas_threads is not None:
        env["BACKPROP_WORKER_BLAS_THREADS"] = str(args.blas_threads)
    os.environ.pop("BACKPROP_REDIS_URL", None)
    stack = Stack(settings, "127.0.0.1", free_port(), workers=2, api_workers=args.api_workers,
                  log_dir=tmp / "logs", extra_env=env)
    bare = BareApp(tmp / "payloads", free_port(), args.api_workers)
    # MLServer as shipped (parallel_workers=1: inference in a process of its own; one per API
    # process of ours) and inferring in its HTTP process as our API does; each inferring
    # process gets the BLAS threads of one of ours.
    blas = str(settings.api_blas_threads)
    peers = {name: MLServer(tmp / name.replace(" ", "-"), free_port(), workers, blas)
             for name, workers in (("MLServer", args.api_workers), ("MLServer in-process", 0))}
    blas_threads = int(stack.env["BACKPROP_WORKER_BLAS_THREADS"])
    limit_blas_threads(blas_threads)  # the bare engine.fit runs in this process, like a worker
    print(f"backprop-service bench: {'quick' if args.quick else 'full'} run, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"API workers {args.api_workers}, 2 RQ workers with {blas_threads or 'all'} BLAS "
          f"thread(s), logs in {tmp / 'logs'}", flush=True)
    t_start, targets = time.perf_counter(), []
    try:
        stack.start()
        with httpx.Client(base_url=stack.url, timeout=120) as api:
            model_id = cases.train_predict_model(api)
            if "predict" in only:
                weights = api.get(f"/v1/models/{model_id}/weights", headers={"accept": NPZ})
                weights.raise_for_status()
                scaling = cases.input_scaling(stack, model_id)
                for peer in peers.values():
                    peer.start(weights.content, scaling, free_port)
                predict_section(cfg, api, stack, bare, peers, model_id, targets,
                                [n for n in cases.NUMBERS if n in args.numbers.split(",")])
                for peer in peers.values():
                    peer.stop()
            if "large" in only:
                rows = cases.large_predict(api, model_id, cfg["large_reps"])
                print_table("Predict 10000 rows (31.4 MB of float32 input), one request at a "
                            "time", ["path", "body MB", "s/request", "input MB/s", "vs JSON"],
                            rows)
                speedup = rows[1][3] / rows[0][3]
                targets.append([".npy / JSON predict, 10000 rows, MB/s", ">= 5", f"{speedup:.1f}",
                                speedup >= 5])
            if "fit" in only:
                row = cases.fit_overhead(api, cfg["fit_s"], cfg["fit_rounds"])
                print_table(f"Training of ~{cfg['fit_s']:g} s: service vs bare engine.fit "
                            f"(wall s, {cfg['fit_rounds']} round(s), bare/service/service/bare)",
                            ["epochs", "rows", "bare engine s", "service s", "service/bare"],
                            [row])
                targets.append(["~10 s training, service / bare engine", "<= 1.05", row[4],
                                float(row[4]) <= 1.05])
            if only & {"latency", "tiny"}:
                jobs_section(cfg, api, stack, only, targets)
            if "upload" in only:
                rows = cases.uploads(api, stack, cfg["upload_rows"], tmp)
                print_table(f"Upload {cfg['upload_rows']} x 784 float32 (multipart), API "
                            f"peak RSS (VmHWM)", ["format", "file MB", "s", "MB/s",
                                                  "idle RSS MB", "peak RSS MB", "peak/file",
                                                  "(peak-idle)/file"],
                            rows)
                for row in rows:
                    targets.append([f"upload {row[0]}: API peak RSS / file", "<= 3",
                                    row[6], float(row[6]) <= 3])
                print_table("JSON upload {name, X, y} of the same kind of data (within the "
                            "64 MiB default body limit)", ["body", "MB", "s", "MB/s",
                                                          "idle RSS MB", "peak RSS MB",
                                                          "peak/body", "(peak-idle)/body"],
                            [cases.json_upload(api, stack, cfg["json_rows"])])
    finally:
        for peer in peers.values():
            peer.stop()
        bare.stop()
        stack.stop()
    print_table("Targets", ["figure", "target", "measured", "met"],
                [t[:3] + ["yes" if t[3] else "NO"] for t in targets])
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load average now "
          f"{os.getloadavg()[0]:.2f}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
