#!/usr/bin/env python
"""Training speed on a CUDA GPU: the engine on CuPy next to torch CUDA, and the engine on
this machine's CPU, side by side in one run.

    python bench/gpu_speed.py            (on a machine with CuPy, torch CUDA and a GPU)
    python bench/gpu_speed.py --dry-run  (anywhere: NumPy stands in for CuPy, torch on CPU)

784-512-256-10 (relu, relu, softmax + cross-entropy), plain SGD at learning rate 0.01, the
rows shuffled every epoch, float32 without TF32 on both (CuPy's and torch's default), data
already in device memory for torch and in host memory for the engine (fit copies it once, as
the worker's jobs do). A rate is samples per second of one epoch, the median of epochs 2..E of
a fit (epoch 1 and the set-up excluded), the median over interleaved rounds; ratios are
medians of per-round ratios. Targets (issue 14): engine GPU >= torch CUDA at batch 4096,
>= 0.8x at batch 256. Then a profile of one engine epoch (and one torch epoch) per batch
size through torch.profiler's CUPTI tracing, which records every kernel in the process,
CuPy's included: kernels, copies and GPU-busy time per batch, against the wall time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter

import numpy as np

from gpu_common import install_numpy_cupy

SPEC = {"layers": [{"units": 512, "activation": "relu"}, {"units": 256, "activation": "relu"},
                   {"units": 10, "activation": "softmax"}], "loss": "cross_entropy"}
LEARNING_RATE = 0.01


def engine_rate(Network, X, y, batch: int, device: str, epochs: int) -> float:
    history = Network(SPEC, seed=0, device=device).fit(
        X, y, {"optimizer": "sgd", "learning_rate": LEARNING_RATE, "epochs": epochs,
               "batch_size": batch})
    return len(X) / statistics.median(r["seconds"] for r in history[1:])


class TorchNet:
    def __init__(self, torch, device: str):
        nn = torch.nn
        self.torch, self.device = torch, device
        self.model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256),
                                   nn.ReLU(), nn.Linear(256, 10)).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE)
        self.ce = nn.CrossEntropyLoss()

    def epoch(self, Xt, yt, batch: int) -> None:
        perm = self.torch.randperm(len(Xt), device=self.device)
        for i in range(0, len(Xt), batch):
            idx = perm[i:i + batch]
            loss = self.ce(self.model(Xt.index_select(0, idx)), yt.index_select(0, idx))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()


def torch_rate(torch, device, Xt, yt, batch: int, epochs: int) -> float:
    net = TorchNet(torch, device)
    seconds = []
    for _ in range(epochs):
        net.synchronize()
        started = time.perf_counter()
        net.epoch(Xt, yt, batch)
        net.synchronize()
        seconds.append(time.perf_counter() - started)
    return len(Xt) / statistics.median(seconds[1:])


def profile(torch, run) -> dict | None:
    """Kernels, copies, GPU-busy microseconds and CUDA API calls of what run(start) does after
    it calls start() (CUPTI, through torch.profiler)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    if not torch.cuda.is_available():
        return None
    prof = torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    run(prof.start)
    torch.cuda.synchronize()
    prof.stop()
    kernels = copies = 0
    busy_us = 0.0
    api: Counter = Counter()
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            busy_us += e.time_range.elapsed_us()
            if "memcpy" in e.name.lower() or "memset" in e.name.lower():
                copies += 1
            else:
                kernels += 1
        elif e.name.startswith(("cuda", "cu")):
            api[e.name] += 1
    return {"kernels": kernels, "copies": copies, "busy_us": busy_us, "api": api}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="NumPy for CuPy, torch on the CPU")
    p.add_argument("--rows", type=int, default=60000)
    p.add_argument("--cpu-rows", type=int, default=20000, help="rows per CPU epoch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="epochs per GPU fit (>= 2)")
    p.add_argument("--batches", default="32,256,4096")
    p.add_argument("--profile-rows", type=int, default=16384)
    args = p.parse_args()
    if args.dry_run:
        install_numpy_cupy()
    import cupy
    import torch

    from engine import Network
    from engine_contenders import make_data

    device = "cuda" if torch.cuda.is_available() else "cpu"
    batches = [int(b) for b in args.batches.split(",")]
    X, y = make_data(args.rows)
    Xt, yt = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    Xc, yc = X[:args.cpu_rows], y[:args.cpu_rows]
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    print(f"# CuPy {cupy.__version__} on {name.decode() if isinstance(name, bytes) else name}; "
          f"torch {torch.__version__} on {device} (TF32 matmul: "
          f"{torch.backends.cuda.matmul.allow_tf32}); {args.rows} x 784 float32 on the GPUs, "
          f"{args.cpu_rows} rows per CPU epoch; {args.rounds} rounds, {args.epochs} epochs "
          "per GPU fit", flush=True)
    for batch in batches:                      # warm-up: kernels compiled, pools filled
        engine_rate(Network, X[:4096], y[:4096], batch, "gpu", 2)
        torch_rate(torch, device, Xt[:4096], yt[:4096], batch, 2)
    rates = {(b, k): [] for b in batches for k in ("gpu", "torch", "cpu")}
    for r in range(args.rounds):
        for batch in batches:
            rates[batch, "gpu"].append(engine_rate(Network, X, y, batch, "gpu", args.epochs))
            rates[batch, "torch"].append(torch_rate(torch, device, Xt, yt, batch, args.epochs))
            rates[batch, "cpu"].append(engine_rate(Network, Xc, yc, batch, "cpu", 2))
        print(f"# round {r + 1}/{args.rounds} done", flush=True)

    def ratio(batch, a, b):
        return statistics.median(x / z for x, z in zip(rates[batch, a], rates[batch, b]))

    print(f"\n{'batch':>6}{'engine GPU /s':>16}{'torch CUDA /s':>16}{'engine CPU /s':>16}"
          f"{'GPU/torch':>11}{'GPU/CPU':>10}")
    for batch in batches:
        med = {k: statistics.median(rates[batch, k]) for k in ("gpu", "torch", "cpu")}
        print(f"{batch:>6}{med['gpu']:>16,.0f}{med['torch']:>16,.0f}{med['cpu']:>16,.0f}"
              f"{ratio(batch, 'gpu', 'torch'):>11.2f}{ratio(batch, 'gpu', 'cpu'):>10.2f}")
    print("\ntargets:")
    for batch, target in ((4096, 1.0), (256, 0.8)):
        if batch in batches:
            value = ratio(batch, "gpu", "torch")
            print(f"  engine GPU / torch CUDA, batch {batch}: {value:.2f} (target >= {target:.2f})"
                  f" {'met' if value >= target else 'MISSED'}")

    print(f"\nwhere the time goes: one epoch of {args.profile_rows} rows, per batch "
          "(wall from the timed runs; kernels and GPU-busy time from CUPTI)")
    Xp, yp = X[:args.profile_rows], y[:args.profile_rows]
    print(f"{'batch':>6} {'who':<7}{'wall us':>9}{'GPU-busy us':>13}{'kernels':>9}{'copies':>8}"
          "  CUDA API calls per batch")
    for batch in batches:
        n_batches = -(-args.profile_rows // batch)
        training = {"optimizer": "sgd", "epochs": 2, "learning_rate": LEARNING_RATE,
                    "batch_size": batch}
        tnet = TorchNet(torch, device)
        Xtp, ytp = Xt[:args.profile_rows], yt[:args.profile_rows]

        def engine_run(start):                      # epoch 2 only: no set-up, no copy of X
            Network(SPEC, seed=0, device="gpu").fit(
                Xp, yp, training, on_epoch=lambda record: record["epoch"] == 1 and start())

        def torch_run(start):
            tnet.epoch(Xtp, ytp, batch)
            tnet.synchronize()
            start()
            tnet.epoch(Xtp, ytp, batch)

        for who, run, key in (("engine", engine_run, "gpu"), ("torch", torch_run, "torch")):
            found = profile(torch, run)
            if found is None:
                print(f"{batch:>6} {who:<7}  (no CUDA profiler on {device})")
                continue
            wall = 1e6 * batch / statistics.median(rates[batch, key])
            api = ", ".join(f"{k} {v / n_batches:.1f}" for k, v in found["api"].most_common(6))
            print(f"{batch:>6} {who:<7}{wall:>9.0f}{found['busy_us'] / n_batches:>13.0f}"
                  f"{found['kernels'] / n_batches:>9.1f}{found['copies'] / n_batches:>8.1f}  "
                  f"{api}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
