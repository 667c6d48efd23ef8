"""The training loop: epochs of minibatches, validation, early stopping, epoch records.

A record, passed to on_epoch after every epoch and returned in fit's history (JSON-safe):
    epoch           1-based, counting across resumed fits
    loss            mean training loss over the epoch's batches (before each batch's update)
    val_loss        loss on the validation rows after the epoch, or None without a split
    metric, metric_name, val_metric
                    training.metric (default accuracy for classifiers, R^2 for regression),
                    like loss and val_loss
    rmse, val_rmse, mae, val_mae
                    regression only (beside the chosen metric): errors in the target's units
                    (fit's target_scale), on the training and the validation rows
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

from . import blas, memory
from .data import check_data, prepare_inputs, prepare_targets
from .errors import TrainingDiverged
from .metrics import METRICS, metrics_for, total_sum_of_squares
from .optimizers import OPTIMIZERS, Optimizer
from .propagation import Workspace, backward, forward, gather_rows, output_delta
from .schedules import learning_rate
from .spec import TrainingSpec, as_training_spec
from .split import rows_outside, split_rows

PROBE_BATCHES = 8
"""Batches per epoch whose gradient norms and |phi'| are measured for the epoch record."""


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
    run = net.run
    optimizer = OPTIMIZERS[training.optimizer](training, net.weights)
    if run is None:
        rng = np.random.default_rng(_training_seed(net, training))
        run = net.run = RunState(training=training, rng=rng, optimizer=optimizer)
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
        train_idx, run.val_idx = split_rows(n, training.validation_split,
                                            _training_seed(net, training))
        run.n_rows = n
        return train_idx, run.val_idx
    return rows_outside(n, run.val_idx), run.val_idx


def _squared_norm(xp, a):
    """||a||^2 as a 0-d array (no host sync on a GPU)."""
    flat = a.ravel()
    return xp.vdot(flat, flat)


def _total(xp, values: list) -> float:
    """The sum of a batch quantity over an epoch: Python floats (CPU, summed in order), or 0-d
    device arrays (GPU: one float64 reduction and one transfer for the whole epoch)."""
    if not values or isinstance(values[0], float):
        return float(sum(values))
    return float(xp.stack(values).sum(dtype=np.float64))


def _sums(be, values: list) -> np.ndarray:
    """The sums (1-D) of a metric's batch scores over an epoch, on the host in float64 (one
    reduction and one transfer per metric and epoch)."""
    return np.asarray(be.to_host(be.xp.stack(values).sum(axis=0, dtype=np.float64)))


def class_weights(class_weight, labels: np.ndarray, k: int) -> np.ndarray | None:
    """Per output unit the weight of its rows' gradient (k,), from training.class_weight:
    "balanced" (n / (k * rows of the class), as scikit-learn's), or {unit index: weight}
    (unlisted units 1); None without class weights. labels (n,) are the training rows'."""
    if class_weight is None:
        return None
    if class_weight == "balanced":
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        return np.divide(len(labels), k * counts, out=np.ones(k), where=counts > 0)
    weights = np.ones(k)
    for key, weight in class_weight.items():
        if not (key.isdigit() and int(key) < k):
            raise ValueError(f"training.class_weight: {key!r} is not an output unit; give "
                             f"classes 0..{k - 1} (or \"balanced\")")
        weights[int(key)] = weight
    return weights


def _evaluate(net, X, T, idx, metrics):
    """(mean loss, [each metric]) on the rows idx of (X, T), in chunks that gather their rows
    and run forward within memory.WORKSPACE_BYTES."""
    outputs = net.n_outputs * X.itemsize
    per_row = X.shape[1] * X.itemsize + T.itemsize * (T.shape[1] if T.ndim == 2 else 1)
    rows = memory.chunk_rows(net.widths, net.dtype, per_row + 3 * outputs)  # + loss scratch
    loss_sum = 0.0
    sums = [0.0] * len(metrics)
    to_host = net.backend.to_host
    for start in range(0, len(idx), rows):
        part = idx[start:start + rows]
        t = T[part]
        for _, z, f in net.forward_chunks(X[part], rows):
            loss_sum += float(net.loss_function.value_sum(z, f, t))
            for i, metric in enumerate(metrics):
                sums[i] = sums[i] + np.asarray(to_host(metric.batch_score(f, t)), np.float64)
    return loss_sum / len(idx), [m.finish(s, len(idx)) for m, s in zip(metrics, sums)]


def _diverged(net, epoch: int, batch: int, loss: float, lr: float, ws, x) -> TrainingDiverged:
    """The error for a non-finite loss, naming the layer with the largest gradient norm.
    ws must hold the failing batch's forward pass and delta^(L), before any update."""
    xp = net.backend.xp
    norms = [0.0] * len(net.weights)

    def measure(l, W, b, dW, db):
        norm = math.sqrt(float(_squared_norm(xp, dW)))
        norms[l] = math.inf if math.isnan(norm) else norm

    backward(xp, net.weights, net.activations, x, ws, measure)
    layer = int(np.argmax(norms)) + 1
    rate = net.run.training.learning_rate
    scheduled = f" (the schedule's rate in this epoch: {lr:g})" if lr != rate else ""
    return TrainingDiverged(
        f"the training loss became {loss} at epoch {epoch} (batch {batch}); the largest gradient "
        f"norm was in layer {layer} (||dL/dW|| = {norms[layer - 1]:.3g}). learning_rate "
        f"{rate:g}{scheduled} is probably too large: try {rate / 10:g} or smaller.",
        epoch=epoch, layer=layer)


class _Epochs:
    """One fit call's fixed set-up (batches, buffers, probes) and its epochs of batches."""

    def __init__(self, net, run: RunState, X, T, train_idx, val_idx, should_stop,
                 target_scale=None):
        training = run.training
        be = net.backend
        self.net, self.run, self.X, self.T, self.should_stop = net, run, X, T, should_stop
        self.train_idx, self.val_idx = train_idx, val_idx
        self.n_train = n_train = len(train_idx)
        self.batch = n_train if training.full_batch else min(training.batch_size, n_train)
        self.shuffle = training.shuffle and self.batch < n_train
        self.contiguous = not self.shuffle and len(val_idx) == 0     # batches are slices of X
        self.ws = Workspace(be.xp, net.dtype, net.widths, self.batch, target_shape=T.shape[1:],
                            target_dtype=T.dtype, gather_inputs=not self.contiguous)
        scale = None if target_scale is None else be.asarray(target_scale, net.dtype)
        metrics = metrics_for(training.metric, net.loss_function, net.n_outputs, scale)
        self.metrics = [m.for_rows(total_sum_of_squares(
            T[be.asarray(train_idx)] if len(val_idx) else T)) for m in metrics]
        self.val_metrics = [m.for_rows(total_sum_of_squares(T[be.asarray(val_idx)]))
                            for m in metrics] if len(val_idx) else []
        self.row_weights = None
        if training.class_weight is not None:
            if not (net.loss_function.name == "cross_entropy" and T.ndim == 1):
                raise ValueError("training.class_weight needs a softmax + cross_entropy network "
                                 "with one class per row")
            labels = np.asarray(be.to_host(T[be.asarray(train_idx)]))
            self.row_weights = be.asarray(class_weights(training.class_weight, labels,
                                                        net.n_outputs), net.dtype)
        self.sync = be.is_cpu                                     # GPU: one host sync per epoch
        self.n_batches = n_batches = -(-n_train // self.batch)
        probes = np.unique(np.linspace(0, n_batches - 1, min(PROBE_BATCHES, n_batches)).round())
        self.probes = {int(k): p for p, k in enumerate(probes)}    # batch -> probe slot
        # Per probe batch and layer: ||dW||^2 and the sum of |phi'|, written where they are
        # computed (no host sync) and read once per epoch. Entries (rows * units) per slot:
        self.probe_values = be.xp.zeros((len(probes), 2, len(net.weights)), np.float64)
        units = np.array(net.widths[1:])
        self.probe_entries = np.array([min(self.batch, n_train - int(k) * self.batch) * units
                                       for k in probes])
        self.fuse = be.is_cpu and run.optimizer.fused_step and blas.available(net.dtype)

    def epoch(self, epoch: int) -> dict | None:
        """Train epoch `epoch` (0-based) and return its record without validation and
        seconds; None when should_stop stopped it (the shuffling RNG rewound)."""
        run, net = self.run, self.net
        lr = learning_rate(run.training, epoch)
        rng_at_start = run.rng.bit_generator.state
        order = run.rng.permutation(self.train_idx) if self.shuffle else self.train_idx
        start = None if self.sync else _Snapshot(net, run)
        sums = self._batches(epoch, order, lr, sync=self.sync, may_stop=True)
        if sums is None:
            # Rewind the shuffling RNG: a stop at an epoch boundary then resumes exactly as
            # if training had never stopped.
            run.rng.bit_generator.state = rng_at_start
            return None
        if start is not None and not math.isfinite(sums[0]):
            # A GPU checks the loss once per epoch, after the weights have moved on: train the
            # epoch again from its start, checking every batch as the CPU does, so that the
            # error names the batch and layer the CPU would.
            start.restore()
            sums = self._batches(epoch, order, lr, sync=True, may_stop=False)
        loss_sum, scores = sums
        probed = net.backend.to_host(self.probe_values)
        scale = run.optimizer.grad_scale(lr)      # the factor in the dW the probes measured
        values = [m.finish(s, self.n_train) for m, s in zip(self.metrics, scores)]
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / self.n_train,
            "val_loss": None,
            "metric": values[0],
            "metric_name": self.metrics[0].name,
            "val_metric": None,
            "learning_rate": float(lr),
            "seconds": 0.0,
            "grad_norms": (np.sqrt(probed[:, 0]) / scale).mean(axis=0).tolist(),
            "phi_prime_mean": (probed[:, 1] / self.probe_entries).mean(axis=0).tolist(),
        }
        for metric, value in zip(self.metrics[1:], values[1:]):
            record[metric.name], record[f"val_{metric.name}"] = value, None
        return record

    def validate(self, record: dict) -> None:
        if len(self.val_idx):
            record["val_loss"], values = _evaluate(
                self.net, self.X, self.T, self.net.backend.asarray(self.val_idx),
                self.val_metrics)
            record["val_metric"] = values[0]
            for metric, value in zip(self.val_metrics[1:], values[1:]):
                record[f"val_{metric.name}"] = value

    def _batches(self, epoch: int, order, lr: float, sync: bool, may_stop: bool):
        """One pass over the batches in `order`: (loss sum, score sum), the probed batches'
        figures in probe_values, or None when should_stop said so. With sync, every batch's
        loss is checked on the host and a non-finite one raises TrainingDiverged before that
        batch's update."""
        net, ws, opt = self.net, self.ws, self.run.optimizer
        be, xp = net.backend, net.backend.xp
        params, acts, loss_fn = net.weights, net.activations, net.loss_function
        X, T, batch, n_train = self.X, self.T, self.batch, self.n_train
        scale = opt.grad_scale(lr)
        order_d = be.asarray(order) if not self.contiguous else None
        losses = []                      # per batch: floats (sync), else 0-d device arrays
        scores = [[] for _ in self.metrics]          # per metric and batch: 1-D sums
        probed = self.probe_values
        for k in range(self.n_batches):
            if may_stop and self.should_stop is not None and self.should_stop():
                return None
            lo, hi = k * batch, min((k + 1) * batch, n_train)
            m = hi - lo
            if self.contiguous:
                x, t = X[lo:hi], T[lo:hi]
            else:
                rows = order_d[lo:hi]
                x = gather_rows(xp, X, rows, ws.x[:m])
                t = gather_rows(xp, T, rows, ws.t[:m])
            f, batch_loss = forward(xp, params, acts, x, ws, loss_fn, t)
            z = ws.z_out[:m]
            probe = self.probes.get(k)
            if probe is not None:
                for l, act in enumerate(acts):
                    probed[probe, 1, l] = act.sum_abs_derivative(ws.acts[l][:m])
            for metric, kept in zip(self.metrics, scores):
                kept.append(metric.batch_score(f, t))
            if sync:
                batch_loss = float(batch_loss)
                if not math.isfinite(batch_loss):
                    output_delta(xp, loss_fn, acts[-1], z, f, t, 1.0 / m, ws.deltas[-1][:m])
                    raise _diverged(net, epoch + 1, k + 1, batch_loss, lr, ws, x)
            losses.append(batch_loss)
            opt.begin_step()
            output_delta(xp, loss_fn, acts[-1], z, f, t, scale / m, ws.deltas[-1][:m])
            if self.row_weights is not None:         # class weights scale each row's delta
                ws.deltas[-1][:m] *= self.row_weights[t][:, None]

            def update(l, W, b, dW, db, probe=probe):
                if probe is not None:
                    probed[probe, 0, l] = _squared_norm(xp, dW)
                opt.update(l, W, b, dW, db, lr)

            backward(xp, params, acts, x, ws, update,
                     fused_step=self.fuse and probe is None)
        # On a GPU, summed once in float64: float32 batch losses cannot overflow the sum.
        return _total(xp, losses), [_sums(be, s) for s in scores]


class _Snapshot:
    """The weights and optimizer state at an epoch's start (device copies), to replay it."""

    def __init__(self, net, run: RunState):
        self.net, self.optimizer = net, run.optimizer
        self.weights = [(W.copy(), b.copy()) for W, b in net.weights]
        self.arrays = {key: a.copy() for key, a in run.optimizer.arrays().items()}
        self.scalars = run.optimizer.scalars()

    def restore(self) -> None:
        for (W, b), (W0, b0) in zip(self.net.weights, self.weights):
            W[...] = W0
            b[...] = b0
        for key, a in self.optimizer.arrays().items():   # slots made in the epoch start at 0
            a[...] = self.arrays.get(key, 0)
        self.optimizer.load({}, self.scalars)


def fit(net, X, Y, training=None, on_epoch=None, should_stop=None,
        target_scale=None) -> list[dict]:
    """Train net on (X, Y) from epoch net.epochs_done + 1 to training.epochs.

    should_stop() is checked between batches: when it returns True, fit returns at once with
    the weights as they are (the partial epoch unrecorded) and net.stopped = True. Early
    stopping ends fit normally, restoring the best weights if asked, with net.stopped_early =
    True; a net that stopped early does not train further. With early_stopping.restore_best
    the best weights are restored at the epoch cap too. net.kept_epoch is then the epoch whose
    weights the net holds, so its record's metrics describe the net as it is. Raises
    TrainingDiverged on a NaN or infinite loss. The validation rows are split_rows(len(X),
    validation_split, seed) with the training spec's seed, else the network's.
    target_scale (k,) is the factor from the targets Y to their own units (a standardized
    regression target's standard deviations), for rmse and mae.
    """
    training = as_training_spec(training)
    check_data(net.spec, X, Y, n_inputs=net.n_inputs)
    be = net.backend
    net.build(np.shape(X)[1])
    X = prepare_inputs(X, be, net.dtype)
    T = prepare_targets(net.spec, Y, be, net.dtype)
    net.stopped = False
    history: list[dict] = []
    if net.stopped_early or net.epochs_done >= training.epochs:
        return history

    run = _run_state(net, training)
    train_idx, val_idx = _split(net, run, training, len(X))
    epochs = _Epochs(net, run, X, T, train_idx, val_idx, should_stop, target_scale)
    es = training.early_stopping
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for epoch in range(net.epochs_done, training.epochs):
            started = time.perf_counter()
            record = epochs.epoch(epoch)
            if record is None:
                net.stopped = True
                return history
            epochs.validate(record)
            record["seconds"] = time.perf_counter() - started
            net.epochs_done = net.kept_epoch = epoch + 1
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if es is not None and _early_stop(net, run, es, record):
                break
        else:
            if es is not None and es.restore_best:
                _restore_best(net, run)
    return history


def _monitored(es, record: dict) -> float | None:
    """The monitored value, signed so that lower is better (None: undefined this epoch)."""
    value = record[es.monitor]
    if value is None or es.monitor in ("loss", "val_loss"):
        return value
    return -value if METRICS[record["metric_name"]].higher_is_better else value


def _restore_best(net, run: RunState) -> None:
    if run.best_params is None:
        return
    for (W, b), (W0, b0) in zip(net.weights, run.best_params):
        W[...] = W0
        b[...] = b0
    net.kept_epoch = run.best_epoch


def _early_stop(net, run: RunState, es, record: dict) -> bool:
    """Track the best monitored value; True (after restoring weights if asked) on patience."""
    value = _monitored(es, record)
    if value is not None and (run.best_value is None or value < run.best_value - es.min_delta):
        run.best_value, run.best_epoch, run.wait = value, record["epoch"], 0
        if es.restore_best:
            run.best_params = [(W.copy(), b.copy()) for W, b in net.weights]
        return False
    run.wait += 1
    if run.wait < es.patience:
        return False
    net.stopped_early = True
    if es.restore_best:
        _restore_best(net, run)
    return True
