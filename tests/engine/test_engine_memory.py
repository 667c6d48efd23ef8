"""engine.memory: the bytes of a predict or a training run, known before doing it, and the
byte budget that predict and validation chunk their rows by."""
import tracemalloc

import numpy as np
import pytest

from engine import OPTIMIZERS, Network, memory
from engine.propagation import Workspace
from engine_helpers import spec

PYTHON_OBJECTS = 64 << 10
"""tracemalloc counts Python's objects too (a Workspace of 64 layers holds 130 arrays)."""


def traced_peak(fn) -> int:
    """Peak bytes allocated (NumPy's buffers included) while fn runs, above what was held."""
    tracemalloc.start()
    try:
        held = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()


def workspace_bytes(ws: Workspace) -> int:
    ws.zeros((1, 1))                                          # made on first use
    arrays = [ws.zt, *ws.acts, ws.z_out, ws._zeros]
    return sum(a.nbytes for a in arrays if a is not None)


@pytest.mark.parametrize("rows", [1, 100, 129, 1000])
def test_forward_workspace_bytes_bound_the_buffers_a_forward_pass_makes(rows):
    widths = [7, 30, 50, 3]
    ws = Workspace(np, "float32", widths, rows, backward=False)
    assert workspace_bytes(ws) <= memory.forward_workspace_bytes(widths, rows, "float32")
    if rows <= memory.TRANSPOSED_GEMM_ROWS:                  # every scratch buffer in use
        assert workspace_bytes(ws) == memory.forward_workspace_bytes(widths, rows, "float32")


def narrow_wide(layers: int) -> dict:
    units = [65536 if l % 2 == 0 else 1 for l in range(layers)]
    return {"layers": [{"units": u, "activation": "relu"} for u in units[:-1]]
            + [{"units": units[-1], "activation": "identity"}], "loss": "squared_error"}


@pytest.mark.parametrize("layers, rows", [(2, 4096), (64, 1), (64, 40)])
def test_predicts_through_very_wide_layers_stay_within_the_budget(layers, rows):
    """1-65536-1 predicting 4096 rows took 1 GB in 4096-row chunks; 64 layers alternating
    65536 and 1 units predicting one row took 16 rows of buffers (142 MB)."""
    net = Network(narrow_wide(layers), n_inputs=1, seed=0)
    X = np.random.default_rng(0).standard_normal((rows, 1), dtype=np.float32)
    answer = X.nbytes + rows * 4                              # input rows and the output
    peak = traced_peak(lambda: net.predict(X)) - PYTHON_OBJECTS
    assert peak <= memory.WORKSPACE_BYTES + answer
    assert peak <= memory.predict_bytes(net.widths, rows, "float32")
    assert memory.predict_bytes(net.widths, rows, "float32") <= memory.WORKSPACE_BYTES + answer
    assert peak > memory.WORKSPACE_BYTES / 2                  # the budget is used, not avoided


def test_chunked_and_small_predicts_agree_for_a_network_wider_than_the_budget():
    net = Network(narrow_wide(64), n_inputs=1, seed=1)
    assert memory.small_rows(net.widths) < memory.SMALL_ROWS
    X = np.random.default_rng(1).standard_normal((10, 1), dtype=np.float32)
    whole = net.predict(X)                                    # chunks of chunk_rows rows
    assert memory.chunk_rows(net.widths) < len(X)
    for i in range(3):
        np.testing.assert_allclose(net.predict(X[i:i + 1]), whole[i:i + 1], rtol=1e-5)


def test_validation_is_evaluated_in_budgeted_chunks():
    """A 1-4096-1 network validating 3000 rows: old 4096-row chunks gathered 3000 rows of
    buffers (100 MB); budgeted chunks stay near memory.WORKSPACE_BYTES."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3100, 1))
    Y = np.tanh(X)
    s = {"layers": [{"units": 4096, "activation": "tanh"}, {"units": 1, "activation": "identity"}],
         "loss": "squared_error"}
    net = Network(s, seed=0)
    training = {"epochs": 1, "batch_size": 4, "validation_split": 3000 / 3100,
                "learning_rate": 1e-4}
    peak = traced_peak(lambda: net.fit(X, Y, training))
    estimate = memory.training_bytes(net.widths, 3100, 4, "float32", "sgd", "squared_error",
                                     3000)
    assert peak <= 1.1 * estimate.total
    assert estimate.validation <= memory.WORKSPACE_BYTES
    assert peak < 1.5 * memory.WORKSPACE_BYTES


CLASSIFIER = {"layers": [{"units": 256, "activation": "relu"},
                         {"units": 128, "activation": "tanh"},
                         {"units": 10, "activation": "softmax"}], "loss": "cross_entropy"}


@pytest.mark.parametrize("optimizer, split, batch, early", [
    ("sgd", 0.0, 64, None), ("adam", 0.2, 256, {"patience": 50}), ("momentum", 0.1, None, None)])
def test_training_bytes_match_what_fit_allocates(optimizer, split, batch, early):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 64))                       # float64: fit converts a copy
    y = rng.integers(0, 10, 3000)
    training = {"optimizer": optimizer, "epochs": 2, "batch_size": batch,
                "validation_split": split, "early_stopping": early}
    net = Network(CLASSIFIER, seed=0)
    peak = traced_peak(lambda: net.fit(X, y, training))
    n_val = round(3000 * split)
    estimate = memory.training_bytes(net.widths, 3000, batch or 3000 - n_val, "float32",
                                     optimizer, "cross_entropy", n_val,
                                     restore_best=early is not None)
    assert 0.6 * estimate.total <= peak <= 1.1 * estimate.total


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_buffers_are_the_ones_the_optimizer_makes(name):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    net = Network(spec(), seed=0)
    net.fit(X, y, {"optimizer": name, "epochs": 1, "batch_size": 8, "weight_decay": 1e-3})
    slots = net.run.optimizer._slots
    assert len(slots) == memory.optimizer_buffers(name)
    assert set(slots) - {"scratch"} == set(OPTIMIZERS[name].state_slots)
    assert all(len(buffers) == 2 * len(net.weights) for buffers in slots.values())


def test_a_gpu_run_keeps_the_epochs_start_and_early_stopping_its_best():
    widths, args = [10, 20, 3], (1000, 100, "float32", "adam", "cross_entropy")
    cpu = memory.training_bytes(widths, *args)
    p = memory.param_count(widths) * 4
    assert cpu.kept_weights == 0 and cpu.optimizer == 3 * p
    assert memory.training_bytes(widths, *args, restore_best=True).kept_weights == p
    assert memory.training_bytes(widths, *args, device="gpu").kept_weights == 3 * p
    assert memory.training_bytes(widths, *args).total == sum(
        getattr(cpu, f) for f in ("data", "indices", "params", "grads", "optimizer",
                                  "kept_weights", "batch", "activations", "deltas", "validation"))
