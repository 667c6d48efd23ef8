#!/usr/bin/env python
"""Throughput of the backprop engine next to PyTorch (CPU) and scikit-learn, side by side.

    python bench/engine.py            # 60000 x 784 float32; 5 interleaved rounds
    python bench/engine.py --quick    # 2 rounds of shorter runs: a smoke test of the table
    python bench/engine.py --configs relu-ce-b32 --contenders engine,torch --each-run

Each contender lives in its own worker process (so PyTorch's OpenMP threads and NumPy's
OpenBLAS threads never spin against each other), all with the same thread count and the same
synthetic data. The parent asks them in turn (the order rotating), round after round, to train
one epoch over the data for each configuration (all 60000 rows, so per-fit costs such as
weight init count as they do in real training; --run-rows N trains on the first N rows for
shorter runs), and reports median samples/s and the median of the per-round ratios: on a noisy
machine only ratios measured this way mean anything. The GEMM roofline is
the big-matrix sgemm FLOP/s (NumPy's BLAS, measured in every round) divided by the network's
GEMM FLOPs per training sample. Peak memory is the peak RSS of a fresh process that builds the
full data set and trains the batch-256 configuration on it for one epoch. Needs torch and
scikit-learn (the `peers` extra) and threadpoolctl; a missing contender is reported absent.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from engine_contenders import (  # bench/, the script's own folder
    CONFIGS, CONTENDERS, HIDDEN, LEARNING_RATE, N_CLASSES, N_FEATURES, EngineContender,
    make_data)

PAUSE_S = 0.3
"""Idle time before each timed run: BLAS threads of the previous contender spin for about
0.1 s after their last call, and must not eat into the next contender's run."""
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
"""Variables that pin OpenBLAS to a kernel: a deployment's choice (README, Performance knobs),
passed to every contender alike as this shell has them, and printed in the header."""


def gemm_flops_per_sample() -> int:
    """Forward z = x W^T (2 n_in n_out per layer), dL/dW (the same) and dL/dx for every layer
    above the first (the same again): FLOPs of one training sample's GEMMs."""
    widths = [N_FEATURES, *HIDDEN, N_CLASSES]
    pairs = [a * b for a, b in zip(widths[:-1], widths[1:])]
    return 2 * (2 * sum(pairs) + sum(pairs[1:]))


def worker(name: str, threads: int, rows: int) -> None:
    """Serve commands from the parent on stdin: `run CONFIG`, `gemm`, `info`, `quit`."""
    contender = CONTENDERS[name](threads)
    X, y = make_data(rows)
    Y1h = np.eye(N_CLASSES, dtype=np.float32)[y]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "run":
            n = int(args[1]) if len(args) > 1 else rows
            started = time.perf_counter()
            contender.train(X[:n], y[:n], Y1h[:n], args[0])
            reply = {"seconds": time.perf_counter() - started, "samples": n}
        elif cmd == "gemm":
            reply = {"flops": sgemm_flops()}
        elif cmd == "info":
            reply = {"info": contender.info()}
        else:
            return
        print(json.dumps(reply), flush=True)


def sgemm_flops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b, c = a.T.copy(), np.empty_like(a)
    np.matmul(a, b, out=c)
    best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def peak_rss() -> int:
    """This process's peak resident set size in bytes. VmHWM, unlike ru_maxrss, starts afresh
    at exec (ru_maxrss keeps the forking parent's peak)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_probe(rows: int, threads: int) -> None:
    """Build the data and train relu-ce-b256 for one epoch; print peak RSS and data size."""
    contender = EngineContender(threads)
    base = peak_rss()
    X, y = make_data(rows)
    contender.train(X, y, None, "relu-ce-b256")
    peak = peak_rss()
    print(json.dumps({"peak": peak, "base": base, "data": X.nbytes + y.nbytes}), flush=True)


# -- the parent --------------------------------------------------------------------------------

def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


class Worker:
    def __init__(self, name: str, threads: int, rows: int):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", name, "--threads",
             str(threads), "--rows", str(rows)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(threads))

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker died")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def available(name: str) -> bool:
    """Whether the contender's library is installed (found, not imported: importing torch
    here would only inflate this process)."""
    module = {"engine": "threadpoolctl", "torch": "torch", "sklearn": "sklearn"}[name]
    return importlib.util.find_spec(module) is not None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 rounds of 8192-row runs")
    p.add_argument("--rows", type=int, default=60000, help="rows of synthetic data (60000)")
    p.add_argument("--run-rows", type=int, default=None,
                   help="rows trained per timed run (all of --rows; 8192 with --quick)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (5)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--each-run", action="store_true",
                   help="print every timed run's samples/s as it ends")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    rows = args.rows
    if args.worker:
        return worker(args.worker, args.threads, rows)
    if args.memory_probe:
        return memory_probe(rows, args.threads)
    rounds = args.rounds or (2 if args.quick else 5)
    run_rows = min(rows, args.run_rows or (8192 if args.quick else rows))
    configs = args.configs.split(",")
    names = [c for c in args.contenders.split(",") if available(c)]
    missing = [c for c in args.contenders.split(",") if c not in names]

    shape = "-".join(map(str, [N_FEATURES, *HIDDEN, N_CLASSES]))
    blas_env = ", ".join(f"{k}={os.environ[k]}" for k in BLAS_ENV if k in os.environ)
    print(f"# {rows} x {N_FEATURES} float32, {N_CLASSES} classes, {shape}, "
          f"SGD lr {LEARNING_RATE}, {args.threads} threads, {rounds} interleaved rounds, "
          f"{run_rows} rows per run; {blas_env or ', '.join(BLAS_ENV) + ' unset'}")
    if missing:
        print(f"# absent (not installed): {', '.join(missing)}")
    workers = {name: Worker(name, args.threads, rows) for name in names}
    try:
        for w in workers.values():
            w.read()
        for w in workers.values():
            print(f"#   {w.name}: {w.ask('info')['info']}")
        for name, w in workers.items():                       # warm-up, not counted
            for config in configs:
                w.ask(f"run {config} {min(rows, 2048)}")
        rates = {(c, n): [] for c in configs for n in names}
        gemm = []
        for r in range(rounds):
            gemm.append(workers["engine"].ask("gemm")["flops"] if "engine" in workers
                        else sgemm_flops())
            for config in configs:
                order = names[r % len(names):] + names[:r % len(names)]
                for name in order:
                    time.sleep(PAUSE_S)
                    reply = workers[name].ask(f"run {config} {run_rows}")
                    rates[config, name].append(reply["samples"] / reply["seconds"])
                    if args.each_run:
                        print(f"#   {config} {name}: {rates[config, name][-1]:,.0f}/s", flush=True)
            print(f"# round {r + 1}/{rounds} done", flush=True)
    finally:
        for w in workers.values():
            w.close()
    memory = json.loads(subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-probe", "--rows", str(rows),
         "--threads", str(args.threads)], capture_output=True, text=True, check=True,
        env=child_env(args.threads)).stdout)
    report(rates, gemm, memory, configs, names, rounds)


def report(rates, gemm, memory, configs, names, rounds) -> None:
    peak_flops = statistics.median(gemm)
    roofline = peak_flops / gemm_flops_per_sample()
    print(f"\nsgemm 2048^3: {peak_flops / 1e9:.1f} GFLOP/s (median of {len(gemm)}); "
          f"{gemm_flops_per_sample() / 1e6:.2f} MFLOP per sample -> roofline "
          f"{roofline:,.0f} samples/s\n")

    def ratio(config, a, b):
        if a not in names or b not in names:
            return None
        return statistics.median(x / y for x, y in zip(rates[config, a], rates[config, b]))

    head = (f"{'config':<17}" + "".join(f"{n + ' /s':>14}" for n in names)
            + "".join(f"{n + ' %roof':>14}" for n in names)
            + f"{'engine/torch':>14}{'engine/sklearn':>16}")
    print(head)
    print("-" * len(head))
    summary = {}
    for config in configs:
        med = {n: statistics.median(rates[config, n]) for n in names}
        et, es = ratio(config, "engine", "torch"), ratio(config, "engine", "sklearn")
        summary[config] = (med, et, es)
        print(f"{config:<17}" + "".join(f"{med[n]:>14,.0f}" for n in names)
              + "".join(f"{100 * med[n] / roofline:>13.0f}%" for n in names)
              + (f"{et:>14.2f}" if et else f"{'-':>14}")
              + (f"{es:>16.2f}" if es else f"{'-':>16}"))
    print(f"\n(samples/s: median of {rounds} rounds; ratios: median of the per-round ratios)")
    print("best round of each (load only ever slows a run down):")
    for config in configs:
        best = {n: max(rates[config, n]) for n in names}
        ratios = "".join(f"{best['engine'] / best[n]:>14.2f}" for n in ("torch", "sklearn")
                         if n in names and "engine" in names)
        print(f"{config:<17}" + "".join(f"{best[n]:>14,.0f}" for n in names) + ratios)
    mb = 1e6                                                 # MB as in the issue: 10^6 bytes
    limit = memory["data"] + 150 * mb
    print(f"peak RSS, relu-ce-b256 in a fresh process: {memory['peak'] / mb:.0f} MB "
          f"(dataset {memory['data'] / mb:.0f} MB + 150 MB = {limit / mb:.0f} MB; "
          f"engine imported {memory['base'] / mb:.0f} MB)")

    print("\ntargets:")

    def check(label, value, target, fmt="{:.2f}"):
        if value is None:
            print(f"  {label}: not measured")
            return
        verdict = "met" if value >= target else "MISSED"
        print(f"  {label}: {fmt.format(value)} (target >= {fmt.format(target)}) {verdict}")

    if "relu-ce-b256" in summary:
        med, et, es = summary["relu-ce-b256"]
        check("engine/torch, batch 256", et, 1.1)
        check("engine/sklearn, batch 256", es, 1.3)
        if "engine" in med:
            check("engine share of the GEMM roofline, batch 256", med["engine"] / roofline,
                  0.85, "{:.0%}")
    if "relu-ce-b32" in summary:
        check("engine/torch, batch 32", summary["relu-ce-b32"][1], 1.5)
    verdict = "met" if memory["peak"] <= limit else "MISSED"
    print(f"  peak memory <= dataset + 150 MB: {memory['peak'] / mb:.0f} <= {limit / mb:.0f} MB "
          f"{verdict}")


if __name__ == "__main__":
    main()
