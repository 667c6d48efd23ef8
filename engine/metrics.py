"""Per-epoch metrics, summed batch by batch on the device and finished once per epoch.

Every metric has the same small contract, so the training loop never knows its maths:

    batch_score(f, t)   a 1-D array of sums over the batch's rows (device arrays, no host sync):
                        f (m, k) network outputs, t (m,) integer labels or (m, k) targets
    finish(sums, n)     the epoch's figure from the sums over its n rows (None if undefined)
    higher_is_better    which way early stopping counts an improvement

METRICS maps each name to its class; `training.metric` and the API's allowed values come from
it. Regression metrics get the target's scale (k,) so that rmse and mae are in the target's own
units even though the network trains on standardized targets.
"""
from __future__ import annotations

import numpy as np

from .backend import array_module

LOG_EPS = 1e-15
"""Probabilities are clipped to [LOG_EPS, 1 - LOG_EPS] before the log (as scikit-learn's
log_loss does), so one confident mistake gives a large, finite loss."""


class EpochMetric:
    name = ""
    task = ""                 # "classification" or "regression"
    higher_is_better = True

    def __init__(self, n_outputs: int, target_scale=None, ss_tot: float = 0.0):
        self.n_outputs = n_outputs
        self.target_scale = target_scale      # (k,) device array, or None for unit scale
        self.ss_tot = ss_tot

    def batch_score(self, f, t):
        raise NotImplementedError

    def finish(self, sums: np.ndarray, n: int) -> float | None:
        raise NotImplementedError

    def for_rows(self, ss_tot: float) -> EpochMetric:
        """The same metric for another set of rows (R^2 needs their own spread)."""
        return type(self)(self.n_outputs, self.target_scale, ss_tot)


class Accuracy(EpochMetric):
    """Correctly predicted rows; with several sigmoid labels each label counts 1/k of a row."""

    name, task = "accuracy", "classification"

    def batch_score(self, f, t):
        xp = array_module(f)
        if t.ndim == 1:                                      # softmax + integer labels
            return xp.reshape((f.argmax(axis=1) == t).sum(), (1,))
        return xp.reshape(((f > 0.5) == (t > 0.5)).sum() / t.shape[1], (1,))

    def finish(self, sums, n):
        return float(sums[0]) / n


class LogLoss(EpochMetric):
    """Mean -log p(true class), p clipped to [LOG_EPS, 1 - LOG_EPS]; for sigmoid labels the
    mean binary cross-entropy per label."""

    name, task, higher_is_better = "log_loss", "classification", False

    def batch_score(self, f, t):
        xp = array_module(f)
        p = xp.clip(f, LOG_EPS, 1 - LOG_EPS)
        if t.ndim == 1:
            return xp.reshape(-xp.log(p[xp.arange(len(t)), t]).sum(), (1,))
        terms = t * xp.log(p) + (1 - t) * xp.log(1 - p)
        return xp.reshape(-terms.sum() / t.shape[1], (1,))

    def finish(self, sums, n):
        return float(sums[0]) / n


class F1Macro(EpochMetric):
    """The unweighted mean over classes of 2 precision recall / (precision + recall), from the
    confusion counts (k * k sums: row = true class, column = predicted); single-label only."""

    name, task = "f1_macro", "classification"

    def batch_score(self, f, t):
        xp = array_module(f)
        k = self.n_outputs
        if t.ndim != 1:
            raise ValueError("metric 'f1_macro' needs one class per row (softmax + "
                             "cross_entropy); use 'accuracy' or 'log_loss' for sigmoid labels")
        return xp.bincount(t * k + f.argmax(axis=1), minlength=k * k)

    def finish(self, sums, n):
        k = self.n_outputs
        return f1_macro_of(np.asarray(sums, dtype=np.float64).reshape(k, k))


class R2(EpochMetric):
    """1 - sum (f - y)^2 / sum (y - mean y)^2 over every output (scale-free)."""

    name, task = "r2", "regression"

    def batch_score(self, f, t):
        r = f - t.reshape(f.shape)
        return array_module(f).reshape((r * r).sum(), (1,))

    def finish(self, sums, n):
        return 1.0 - float(sums[0]) / self.ss_tot if self.ss_tot > 0 else None


class _Residuals(EpochMetric):
    task, higher_is_better = "regression", False

    def residuals(self, f, t):
        """(f - y) in the target's units, (m, k)."""
        r = f - t.reshape(f.shape)
        return r if self.target_scale is None else r * self.target_scale


class RMSE(_Residuals):
    """sqrt(mean over rows and outputs of (f - y)^2), in the target's units."""

    name = "rmse"

    def batch_score(self, f, t):
        r = self.residuals(f, t)
        return array_module(f).reshape((r * r).sum(), (1,))

    def finish(self, sums, n):
        return float(np.sqrt(float(sums[0]) / (n * self.n_outputs)))


class MAE(_Residuals):
    """mean over rows and outputs of |f - y|, in the target's units."""

    name = "mae"

    def batch_score(self, f, t):
        xp = array_module(f)
        return xp.reshape(xp.abs(self.residuals(f, t)).sum(), (1,))

    def finish(self, sums, n):
        return float(sums[0]) / (n * self.n_outputs)


METRICS: dict[str, type[EpochMetric]] = {
    m.name: m for m in (Accuracy, LogLoss, F1Macro, R2, RMSE, MAE)}
"""Every per-epoch metric by name: the values `training.metric` accepts."""

DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2"}
EXTRA_METRICS = {"classification": (), "regression": ("rmse", "mae")}
"""Reported in every epoch record beside the chosen metric (a regression's errors in the
target's units)."""


def task_of_loss(loss) -> str:
    return "classification" if loss.classification else "regression"


def check_metric(name: str | None, loss) -> str:
    """The metric a network with `loss` reports: `name`, or its task's default. ValueError,
    naming the valid ones, when `name` does not suit the loss."""
    task = task_of_loss(loss)
    if name is None:
        return DEFAULT_METRIC[task]
    if METRICS[name].task != task:
        valid = sorted(m for m, cls in METRICS.items() if cls.task == task)
        raise ValueError(f"metric {name!r} is for {METRICS[name].task}, but loss {loss.name!r} "
                         f"trains a {task} network; use one of {', '.join(valid)}")
    return name


def metrics_for(name: str | None, loss, n_outputs: int, target_scale=None) -> list[EpochMetric]:
    """The chosen metric first, then its task's extras (each name once)."""
    chosen = check_metric(name, loss)
    names = [chosen] + [m for m in EXTRA_METRICS[task_of_loss(loss)] if m != chosen]
    return [METRICS[m](n_outputs, target_scale) for m in names]


def total_sum_of_squares(t) -> float:
    """sum over rows and columns of (y - column mean)^2 (0 for class labels)."""
    if t.ndim == 1:
        return 0.0
    centred = t - t.mean(axis=0)
    return float((centred * centred).sum())


def f1_macro_of(confusion: np.ndarray) -> float:
    """Macro F1 of a (k, k) confusion matrix (row = true, column = predicted), averaged over
    the classes that occur as truth or prediction, as scikit-learn's f1_score does."""
    tp = np.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    present = denominator > 0
    if not present.any():
        return 0.0
    return float((2 * tp[present] / denominator[present]).mean())
