#!/usr/bin/env python
"""The engine on a CUDA GPU against the engine on the CPU, as users run it.

    python bench/gpu_check.py            (on a machine with CuPy and a GPU)
    python bench/gpu_check.py --dry-run  (anywhere: NumPy stands in for CuPy)

1. every activation, loss and optimizer trains to the same loss history and weights (float64
   to 1e-9, float32 to 1e-4, relative, after 4 epochs), with validation, schedules, weight
   decay and early stopping among the cases;
2. predictions (small, chunked) and labels agree; data already on the GPU trains alike;
3. gradcheck on the GPU (float64 finite differences against the GPU's backprop);
4. a diverging run names the same epoch, batch and layer on both;
5. a run saved on the GPU resumes on the CPU and back, as if never stopped;
6. the GPU memory pool after a fit and a predict, against engine.memory's estimates.
Exits 1 when a check fails.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from gpu_common import Checks, install_numpy_cupy

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus"]
OUTPUTS = [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"),
           ("identity", "squared_error"), ("identity", "huber")]
OPTIMIZERS = ["gd", "sgd", "momentum", "nesterov", "adam"]
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def data(loss: str, n: int = 600, d: int = 12, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    scores = X @ rng.standard_normal((d, k))
    if loss == "cross_entropy":
        return X, scores.argmax(axis=1)
    if loss == "binary_cross_entropy":
        return X, (scores > 0).astype(np.float64)
    return X, np.tanh(scores)


def case(i: int) -> tuple[dict, dict]:
    """Case i of a grid where every activation, loss and optimizer appears (10 cases)."""
    out, loss = OUTPUTS[i % len(OUTPUTS)]
    spec = {"layers": [{"units": 32, "activation": HIDDEN[i % 6]},
                       {"units": 16, "activation": HIDDEN[(i + 3) % 6]},
                       {"units": 3, "activation": out}], "loss": loss}
    optimizer = OPTIMIZERS[i % len(OPTIMIZERS)]
    training = {"optimizer": optimizer, "learning_rate": 0.05 if optimizer != "adam" else 0.005,
                "epochs": 4, "batch_size": 32, "validation_split": 0.2, "seed": i,
                "weight_decay": 1e-3 if i % 3 == 0 else 0.0,
                "schedule": {"name": "cosine"} if i % 2 else {"name": "constant"}}
    if i % 4 == 1:
        training["early_stopping"] = {"patience": 50}
    return spec, training


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def history_error(h_gpu: list[dict], h_cpu: list[dict]) -> float:
    pairs = [(g[key], c[key]) for g, c in zip(h_gpu, h_cpu) for key in ("loss", "val_loss")]
    return max(abs(g - c) / max(abs(c), 1e-300) for g, c in pairs)


def weights_error(gpu, cpu) -> float:
    return max(max(rel(Wg, Wc), rel(bg, bc)) for (Wg, bg), (Wc, bc) in zip(gpu.params, cpu.params))


def check_training_grid(check: Checks, Network) -> None:
    print("\n1. every activation, loss and optimizer: GPU against CPU after 4 epochs")
    for dtype, tol in TOLERANCE.items():
        for i in range(10):
            spec, training = case(i)
            X, Y = data(spec["loss"])
            h_cpu = (cpu := Network(spec, seed=i, dtype=dtype)).fit(X, Y, training)
            h_gpu = (gpu := Network(spec, seed=i, dtype=dtype, device="gpu")).fit(X, Y, training)
            herr, werr = history_error(h_gpu, h_cpu), weights_error(gpu, cpu)
            acts = "-".join(layer["activation"] for layer in spec["layers"])
            check(f"{dtype} {acts} {spec['loss']} {training['optimizer']}",
                  len(h_gpu) == len(h_cpu) == 4 and herr <= tol and werr <= tol,
                  f"history {herr:.1e}, weights {werr:.1e} (<= {tol:g})")


def check_predictions(check: Checks, Network, cupy) -> None:
    print("\n2. predictions, labels, and data already on the GPU")
    spec, training = case(0)
    X, y = data("cross_entropy", n=6000)
    gpu = Network(spec, seed=0, device="gpu")
    gpu.fit(X[:600], y[:600], training)
    cpu = Network.from_bytes(gpu.save_bytes(), device="cpu")
    for rows in (1, 16, 6000):
        p_gpu, p_cpu = gpu.predict(X[:rows]), cpu.predict(X[:rows])
        same = np.array_equal(gpu.predict_labels(X[:rows]), cpu.predict_labels(X[:rows]))
        err = float(np.max(np.abs(p_gpu - p_cpu)))
        check(f"predict {rows} rows", err <= 1e-5 and same and isinstance(p_gpu, np.ndarray),
              f"max abs diff {err:.1e}, labels {'equal' if same else 'DIFFER'}")
    X32 = X[:600].astype(np.float32)
    h_host = Network(spec, seed=0, device="gpu").fit(X32, y[:600], training)
    h_dev = Network(spec, seed=0, device="gpu").fit(cupy.asarray(X32), cupy.asarray(y[:600]),
                                                     training)
    check("fit on CuPy arrays = fit on NumPy arrays", [r["loss"] for r in h_host]
          == [r["loss"] for r in h_dev], f"losses {[round(r['loss'], 6) for r in h_dev]}")


def check_gradients(check: Checks, Network, gradcheck) -> None:
    print("\n3. gradcheck on the GPU (float64, central differences)")
    for hidden, (out, loss) in [(("tanh", "softplus"), OUTPUTS[0]),
                                (("sigmoid", "leaky_relu"), OUTPUTS[1]),
                                (("softplus", "tanh"), OUTPUTS[3])]:
        spec = {"layers": [{"units": 6, "activation": hidden[0]},
                           {"units": 5, "activation": hidden[1]},
                           {"units": 3, "activation": out}], "loss": loss}
        X, Y = data(loss, n=20, d=4)
        net = Network(spec, n_inputs=4, seed=1, dtype="float64", device="gpu")
        worst = max(r["rel_error"] for r in gradcheck(net, X, Y, device="gpu"))
        _, g_gpu = net.loss_and_grads(X, Y)
        _, g_cpu = Network.from_bytes(net.save_bytes()).loss_and_grads(X, Y)
        vs_cpu = max(rel(a, b) for pg, pc in zip(g_gpu, g_cpu) for a, b in zip(pg, pc))
        check(f"{'-'.join(hidden)}-{out} {loss}", worst <= 1e-6 and vs_cpu <= 1e-12,
              f"finite differences {worst:.1e} (<= 1e-6), GPU vs CPU backprop {vs_cpu:.1e}")


def check_divergence(check: Checks, Network, TrainingDiverged) -> None:
    print("\n4. a diverging run names the same epoch, batch and layer")
    from engine import blas, memory, propagation

    rng = np.random.default_rng(0)                          # tests/engine's make_regression
    X = rng.normal(size=(120, 4))
    Y = np.tanh(X @ rng.normal(size=(4, 2))) + 0.05 * rng.normal(size=(120, 2))
    X, Y = 1e3 * X, 1e3 * Y
    spec = {"layers": [{"units": 16, "activation": "relu"}, {"units": 16, "activation": "tanh"},
                       {"units": 2, "activation": "identity"}], "loss": "squared_error"}
    # float32 overflows within an epoch or a few here: few steps in which the two devices'
    # roundings could drift apart. sgd 0.3 diverges in epoch 4: the replay from a later epoch.
    for optimizer, rate in (("sgd", 10.0), ("sgd", 3.0), ("momentum", 3.0), ("sgd", 0.3)):
        training = {"optimizer": optimizer, "learning_rate": rate, "epochs": 30,
                    "batch_size": 8, "seed": 2}
        errors = {}
        for device in ("cpu", "gpu"):
            # The CPU's own faster kernels round differently; off, both compute alike.
            propagation.TRANSPOSED_GEMM_ROWS, blas.ENABLED = 0, False
            try:
                Network(spec, seed=0, device=device).fit(X, Y, training)
                errors[device] = None
            except TrainingDiverged as exc:
                errors[device] = exc
            finally:
                propagation.TRANSPOSED_GEMM_ROWS = memory.TRANSPOSED_GEMM_ROWS
                blas.ENABLED = True
        cpu, gpu = errors["cpu"], errors["gpu"]
        ok = cpu is not None and gpu is not None and str(cpu) == str(gpu)
        check(f"{optimizer} learning_rate {rate:g}", ok,
              f"GPU: {gpu}" if ok else f"CPU: {cpu} | GPU: {gpu}")


def check_resume(check: Checks, Network) -> None:
    print("\n5. saved on the GPU, resumed on the CPU, and back")
    spec, training = case(4)                                 # adam, cross_entropy
    training = {**training, "epochs": 6, "early_stopping": {"patience": 50}}
    X, Y = data(spec["loss"])
    straight = Network(spec, seed=0, dtype="float64", device="gpu")
    full = straight.fit(X, Y, training)
    first = Network(spec, seed=0, dtype="float64", device="gpu")
    part = first.fit(X, Y, training, should_stop=lambda: first.epochs_done == 2)
    on_cpu = Network.from_bytes(first.save_bytes(), device="cpu")
    exact = all(np.array_equal(a, b) for pa, pb in zip(on_cpu.params, first.params)
                for a, b in zip(pa, pb))
    part += on_cpu.fit(X, Y, training, should_stop=lambda: on_cpu.epochs_done == 4)
    back = Network.from_bytes(on_cpu.save_bytes(), device="gpu")
    part += back.fit(X, Y, training)
    herr, werr = history_error(part, full), weights_error(back, straight)
    check("GPU 2 epochs -> CPU 2 -> GPU 2 = GPU 6", exact and [r["epoch"] for r in part]
          == list(range(1, 7)) and herr <= 1e-9 and werr <= 1e-9,
          f"weights restored exactly: {exact}; history {herr:.1e}, weights {werr:.1e}")


def check_memory(check: Checks, Network, cupy, memory) -> None:
    print("\n6. GPU memory pool against engine.memory's estimates")
    pool = cupy.get_default_memory_pool()
    spec = {"layers": [{"units": 512, "activation": "relu"}, {"units": 256, "activation": "relu"},
                       {"units": 10, "activation": "softmax"}], "loss": "cross_entropy"}
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8192, 784), dtype=np.float32)
    y = rng.integers(0, 10, 8192)
    pool.free_all_blocks()
    net = Network(spec, seed=0, device="gpu")
    net.fit(X, y, {"optimizer": "adam", "epochs": 1, "batch_size": 256, "validation_split": 0.1})
    held = pool.total_bytes()
    estimate = memory.training_bytes(net.widths, 8192, 256, "float32", "adam", "cross_entropy",
                                     819, device="gpu").total
    check("fit 784-512-256-10, adam, 8192 rows", held <= 1.25 * estimate + (16 << 20),
          f"pool {held / 2**20:.1f} MiB, estimate {estimate / 2**20:.1f} MiB")
    del net
    pool.free_all_blocks()
    wide = {"layers": [{"units": 65536, "activation": "relu"},
                       {"units": 1, "activation": "identity"}], "loss": "squared_error"}
    net = Network(wide, n_inputs=1, seed=0, device="gpu")
    pool.free_all_blocks()
    base = pool.total_bytes()
    net.predict(rng.standard_normal((4096, 1), dtype=np.float32))
    held = pool.total_bytes() - base
    estimate = memory.predict_bytes(net.widths, 4096, "float32")
    check("predict 4096 rows through 1-65536-1", held <= estimate + (1 << 20),
          f"pool +{held / 2**20:.1f} MiB, estimate {estimate / 2**20:.1f} MiB "
          f"(budget {memory.WORKSPACE_BYTES / 2**20:.0f} MiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="NumPy stands in for CuPy")
    args = parser.parse_args()
    if args.dry_run:
        install_numpy_cupy()
    import cupy

    from engine import Network, TrainingDiverged, gradcheck, memory
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    print(f"CuPy {cupy.__version__}, GPU: {name.decode() if isinstance(name, bytes) else name}")
    check = Checks()
    check_training_grid(check, Network)
    check_predictions(check, Network, cupy)
    check_gradients(check, Network, gradcheck)
    check_divergence(check, Network, TrainingDiverged)
    check_resume(check, Network)
    check_memory(check, Network, cupy, memory)
    return check.summary("gpu_check")


if __name__ == "__main__":
    sys.exit(main())
