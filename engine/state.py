"""Saving and restoring a network with everything needed to resume training exactly.

state() is a flat dict of host NumPy arrays, so it can go straight into np.savez and back with
allow_pickle=False:
    meta                uint8 JSON: spec, dtype, seed, n_inputs, epochs_done, kept_epoch,
                        stopped_early and,
                        once fit has run, the training spec, the shuffling RNG's state, the
                        optimizer's scalars and the early-stopping counters
    param.W.<l>, param.b.<l>     weights of layer l (0-based)
    opt.<slot>.<j>      optimizer buffers (velocity, Adam moments), one per W and b
    best.W.<l>, best.b.<l>       early stopping's best weights so far
    val_idx             the rows held out for validation
"""
from __future__ import annotations

import io
import json
from collections.abc import Mapping

import numpy as np

from .optimizers import OPTIMIZERS
from .spec import NetworkSpec, TrainingSpec
from .training import RunState

STATE_FORMAT = 1
"""Version of the layout above; from_state refuses others."""


def _encode(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8).copy()


def _decode(a: np.ndarray):
    return json.loads(np.asarray(a, dtype=np.uint8).tobytes().decode())


def _host_pairs(net, pairs, prefix: str) -> dict[str, np.ndarray]:
    out = {}
    for l, (W, b) in enumerate(pairs):
        out[f"{prefix}.W.{l}"] = np.array(net.backend.to_host(W))
        out[f"{prefix}.b.{l}"] = np.array(net.backend.to_host(b))
    return out


def network_state(net) -> dict[str, np.ndarray]:
    """The state dict described in this module's docstring."""
    meta = {"format": STATE_FORMAT, "spec": net.spec.model_dump(mode="json"),
            "dtype": net.dtype, "seed": net.seed, "n_inputs": net.n_inputs,
            "epochs_done": net.epochs_done, "kept_epoch": net.kept_epoch,
            "stopped_early": net.stopped_early, "run": None}
    arrays: dict[str, np.ndarray] = {}
    if net.weights is not None:
        arrays.update(_host_pairs(net, net.weights, "param"))
    run = net.run
    if run is not None:
        meta["run"] = {"training": run.training.model_dump(mode="json"),
                       "rng": run.rng.bit_generator.state,
                       "optimizer": run.optimizer.name,
                       "optimizer_scalars": run.optimizer.scalars(),
                       "n_rows": run.n_rows, "best_value": run.best_value,
                       "best_epoch": run.best_epoch, "wait": run.wait}
        for key, a in run.optimizer.arrays().items():
            arrays[f"opt.{key}"] = np.array(net.backend.to_host(a))
        if run.best_params is not None:
            arrays.update(_host_pairs(net, run.best_params, "best"))
        if run.val_idx is not None:
            arrays["val_idx"] = np.asarray(run.val_idx, dtype=np.int64)
    arrays["meta"] = _encode(meta)
    return arrays


def _pairs(state: Mapping, prefix: str) -> list[tuple[np.ndarray, np.ndarray]] | None:
    if f"{prefix}.W.0" not in state:
        return None
    n = sum(1 for key in state if key.startswith(f"{prefix}.W."))
    return [(np.asarray(state[f"{prefix}.W.{l}"]), np.asarray(state[f"{prefix}.b.{l}"]))
            for l in range(n)]


def network_from_state(cls, state: Mapping, device: str = "cpu"):
    """Rebuild a `cls` (Network) from network_state's dict or a loaded .npz file."""
    if "meta" not in state:
        raise ValueError("not a network state: the 'meta' entry is missing")
    meta = _decode(state["meta"])
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"network state format {meta.get('format')!r} is not supported "
                         f"(this engine reads format {STATE_FORMAT})")
    net = cls(NetworkSpec.model_validate(meta["spec"]), seed=meta["seed"], dtype=meta["dtype"],
              device=device)
    params = _pairs(state, "param")
    if params is not None:
        net.set_params(params, check_finite=False)       # restored as it was saved
    net.epochs_done = meta["epochs_done"]
    net.stopped_early = meta["stopped_early"]
    net.kept_epoch = meta.get("kept_epoch")          # states saved before it existed: None
    run_meta = meta["run"]
    if run_meta is not None:
        training = TrainingSpec.model_validate(run_meta["training"])
        rng = np.random.default_rng()
        rng.bit_generator.state = run_meta["rng"]
        optimizer = OPTIMIZERS[run_meta["optimizer"]](training, net.weights)
        prefix = "opt."
        optimizer.load({k[len(prefix):]: net.backend.asarray(v) for k, v in state.items()
                        if k.startswith(prefix)}, run_meta["optimizer_scalars"])
        best = _pairs(state, "best")
        to = net.backend
        net.run = RunState(
            training=training, rng=rng, optimizer=optimizer, n_rows=run_meta["n_rows"],
            val_idx=np.asarray(state["val_idx"]) if "val_idx" in state else None,
            best_value=run_meta["best_value"], best_epoch=run_meta["best_epoch"],
            best_params=None if best is None else [
                (to.xp.array(to.asarray(W, net.dtype)), to.xp.array(to.asarray(b, net.dtype)))
                for W, b in best],
            wait=run_meta["wait"])
    return net


def to_bytes(state: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **state)
    return buf.getvalue()


def from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}
