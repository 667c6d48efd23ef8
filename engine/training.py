"""The training loop: epochs of minibatches, validation, early stopping, epoch records.

A record, passed to on_epoch after every epoch and returned in fit's history (JSON-safe):
    epoch           1-based, counting across resumed fits
    loss            mean training loss over the epoch's batches (before each batch's update)
    val_loss        loss on the validation rows after the epoch, or None without a split
    metric, metric_name, val_metric
                    accuracy (classifiers) or R^2 (regression), like loss and val_loss
    learning_rate   the rate used in this epoch
    seconds         wall time of the epoch, validation included
    grad_norms      per layer ||dL/dW^(l)||, averaged over up to PROBE_BATCHES batches spread
                    over the epoch (the lecture's closing remark: watch them vanish or explode)
    phi_prime_mean  per layer the mean |phi'(z^(l))| over the same batches
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import blas
from .data import check_data, prepare_inputs, prepare_targets
from .errors import TrainingDiverged
from .metrics import metric_for, total_sum_of_squares
from .optimizers import OPTIMIZERS, Optimizer
from .propagation import Workspace, backward, forward, gather_rows, output_delta
from .schedules import learning_rate
from .spec import TrainingSpec, as_training_spec

PROBE_BATCHES = 8
"""Batches per epoch whose gradient norms and |phi'| are measured for the epoch record."""

EVAL_ROWS = 4096
"""Validation rows gathered and evaluated at a time, bounding the copy."""

SPLIT_SEED_SALT = 0x5B1D
"""Mixed into the seed for the validation split, so it never consumes the shuffling RNG."""


@dataclass
class RunState:
    """What fit keeps between calls (and state() saves) so that training resumes exactly."""

    training: TrainingSpec
    rng: np.random.Generator
    optimizer: Optimizer
    n_rows: int = 0
    val_idx: np.ndarray | None = None
    best_value: float | None = None
    best_epoch: int = 0
    best_params: list | None = None
    wait: int = 0


def _training_seed(net, training: TrainingSpec) -> int:
    return training.seed if training.seed is not None else net.seed


def _run_state(net, training: TrainingSpec) -> RunState:
    """The net's RunState, created on the first fit and carried over on later ones."""
    run = net._run
    optimizer = OPTIMIZERS[training.optimizer](training, net._params)
    if run is None:
        rng = np.random.default_rng(_training_seed(net, training))
        run = net._run = RunState(training=training, rng=rng, optimizer=optimizer)
        return run
    if run.optimizer.name == optimizer.name:          # keep momentum / Adam moments
        optimizer.load(run.optimizer.arrays(), run.optimizer.scalars())
    run.optimizer, run.training = optimizer, training
    return run


def _split(net, run: RunState, training: TrainingSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows), sorted; the split is drawn once and kept on resume."""
    if training.validation_split == 0:
        return np.arange(n), np.arange(0)
    if run.val_idx is None or run.n_rows != n:
        n_val = int(round(n * training.validation_split))
        if not 0 < n_val < n:
            raise ValueError(f"validation_split {training.validation_split} of {n} rows leaves "
                             f"{n_val} validation and {n - n_val} training rows; both need at "
                             "least one: use more data or another split")
        split_rng = np.random.default_rng([_training_seed(net, training), SPLIT_SEED_SALT])
        run.val_idx = np.sort(split_rng.permutation(n)[:n_val])
        run.n_rows = n
    mask = np.ones(n, bool)
    mask[run.val_idx] = False
    return np.flatnonzero(mask), run.val_idx


def _grad_norm(xp, dW, scale: float) -> float:
    flat = dW.ravel()
    return math.sqrt(float(xp.vdot(flat, flat))) / scale


def _evaluate(net, X, T, idx, metric, ss_tot):
    """(mean loss, metric) on the rows idx of (X, T), in chunks."""
    loss_sum = score = 0.0
    for start in range(0, len(idx), EVAL_ROWS):
        rows = idx[start:start + EVAL_ROWS]
        for _, z, f in net._forward_chunks(X[rows]):
            t = T[rows]
            loss_sum += float(net._loss.value_sum(z, f, t))
            score += float(metric.batch_score(f, t))
    return loss_sum / len(idx), metric.finish(score, len(idx), ss_tot)


def _diverged(net, epoch: int, batch: int, loss: float, lr: float, ws, x) -> TrainingDiverged:
    """The error for a non-finite loss, naming the layer with the largest gradient norm."""
    xp = net._backend.xp
    norms = [0.0] * len(net._params)

    def measure(l, W, b, dW, db):
        norm = _grad_norm(xp, dW, 1.0)
        norms[l] = math.inf if math.isnan(norm) else norm

    backward(xp, net._params, net._acts, x, ws, measure)
    layer = int(np.argmax(norms)) + 1
    rate = net._run.training.learning_rate
    scheduled = f" (the schedule's rate in this epoch: {lr:g})" if lr != rate else ""
    return TrainingDiverged(
        f"the training loss became {loss} at epoch {epoch} (batch {batch}); the largest gradient "
        f"norm was in layer {layer} (||dL/dW|| = {norms[layer - 1]:.3g}). learning_rate "
        f"{rate:g}{scheduled} is probably too large: try {rate / 10:g} or smaller.",
        epoch=epoch, layer=layer)


def fit(net, X, Y, training=None, on_epoch=None, should_stop=None) -> list[dict]:
    """Train net on (X, Y) from epoch net.epochs_done + 1 to training.epochs.

    should_stop() is checked between batches: when it returns True, fit returns at once with
    the weights as they are (the partial epoch unrecorded) and net.stopped = True. Early
    stopping ends fit normally, restoring the best weights if asked, with net.stopped_early =
    True; a net that stopped early does not train further. Raises TrainingDiverged on a NaN
    or infinite loss.
    """
    training = as_training_spec(training)
    check_data(net.spec, X, Y, n_inputs=net.n_inputs)
    be, xp = net._backend, net._backend.xp
    net._ensure_params(np.shape(X)[1])
    X = prepare_inputs(X, be, net.dtype)
    T = prepare_targets(net.spec, Y, be, net.dtype)
    net.stopped = False
    history: list[dict] = []
    if net.stopped_early or net.epochs_done >= training.epochs:
        return history

    run = _run_state(net, training)
    train_idx, val_idx = _split(net, run, training, len(X))
    n_train = len(train_idx)
    batch = n_train if training.full_batch else min(training.batch_size, n_train)
    shuffle = training.shuffle and batch < n_train
    contiguous = not shuffle and len(val_idx) == 0          # batches are slices of X
    ws = Workspace(xp, net.dtype, net.widths, batch, target_shape=T.shape[1:],
                   target_dtype=T.dtype, gather_inputs=not contiguous)
    metric = metric_for(net._loss)
    ss_tot_train = total_sum_of_squares(T[be.asarray(train_idx)] if len(val_idx) else T)
    ss_tot_val = total_sum_of_squares(T[be.asarray(val_idx)]) if len(val_idx) else 0.0
    sync = be.is_cpu                                         # GPU: one host sync per epoch
    n_batches = -(-n_train // batch)
    probes = set(np.linspace(0, n_batches - 1, min(PROBE_BATCHES, n_batches)).round().astype(int))
    n_layers = len(net._params)
    es = training.early_stopping
    fuse = be.is_cpu and run.optimizer.fused_step and blas.available(net.dtype)

    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for epoch in range(net.epochs_done, training.epochs):
            started = time.perf_counter()
            lr = learning_rate(training, epoch)
            opt = run.optimizer
            scale = opt.grad_scale(lr)
            rng_at_start = run.rng.bit_generator.state
            order = run.rng.permutation(train_idx) if shuffle else train_idx
            order_d = be.asarray(order) if not contiguous else None
            loss_sum = score = 0.0
            norms, phis = np.zeros(n_layers), np.zeros(n_layers)

            for k in range(n_batches):
                if should_stop is not None and should_stop():
                    # Rewind the shuffling RNG: a stop at an epoch boundary then resumes
                    # exactly as if training had never stopped.
                    run.rng.bit_generator.state = rng_at_start
                    net.stopped = True
                    return history
                lo, hi = k * batch, min((k + 1) * batch, n_train)
                m = hi - lo
                if contiguous:
                    x, t = X[lo:hi], T[lo:hi]
                else:
                    rows = order_d[lo:hi]
                    x = gather_rows(xp, X, rows, ws.x[:m])
                    t = gather_rows(xp, T, rows, ws.t[:m])
                f, batch_loss = forward(xp, net._params, net._acts, x, ws, net._loss, t)
                z = ws.z_out[:m]
                probe = k in probes
                if probe:
                    for l, act in enumerate(net._acts):
                        phis[l] += act.mean_abs_derivative(ws.acts[l][:m])
                batch_score = metric.batch_score(f, t)
                if sync:
                    batch_loss = float(batch_loss)
                    if not math.isfinite(batch_loss):
                        output_delta(xp, net._loss, net._acts[-1], z, f, t, 1.0 / m,
                                     ws.deltas[-1][:m])
                        raise _diverged(net, epoch + 1, k + 1, batch_loss, lr, ws, x)
                    batch_score = float(batch_score)
                loss_sum += batch_loss
                score += batch_score
                opt.begin_step()
                output_delta(xp, net._loss, net._acts[-1], z, f, t, scale / m, ws.deltas[-1][:m])

                def update(l, W, b, dW, db, probe=probe):
                    if probe:
                        norms[l] += _grad_norm(xp, dW, scale)
                    opt.update(l, W, b, dW, db, lr)

                backward(xp, net._params, net._acts, x, ws, update,
                         fused_step=fuse and not probe)

            loss = float(loss_sum) / n_train
            if not math.isfinite(loss):
                raise _diverged(net, epoch + 1, n_batches, loss, lr, ws, x)
            record = {
                "epoch": epoch + 1,
                "loss": loss,
                "val_loss": None,
                "metric": metric.finish(float(score), n_train, ss_tot_train),
                "metric_name": metric.name,
                "val_metric": None,
                "learning_rate": float(lr),
                "seconds": 0.0,
                "grad_norms": (norms / len(probes)).tolist(),
                "phi_prime_mean": (phis / len(probes)).tolist(),
            }
            if len(val_idx):
                record["val_loss"], record["val_metric"] = _evaluate(
                    net, X, T, be.asarray(val_idx), metric, ss_tot_val)
            record["seconds"] = time.perf_counter() - started
            net.epochs_done = epoch + 1
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if es is not None and _early_stop(net, run, es, record):
                break
    return history


def _early_stop(net, run: RunState, es, record: dict) -> bool:
    """Track the best monitored value; True (after restoring weights if asked) on patience."""
    value = record[es.monitor]
    if run.best_value is None or value < run.best_value - es.min_delta:
        run.best_value, run.best_epoch, run.wait = value, record["epoch"], 0
        if es.restore_best:
            run.best_params = [(W.copy(), b.copy()) for W, b in net._params]
        return False
    run.wait += 1
    if run.wait < es.patience:
        return False
    net.stopped_early = True
    if es.restore_best and run.best_params is not None:
        net._params = [(W.copy(), b.copy()) for W, b in run.best_params]
    return True
