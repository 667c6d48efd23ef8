"""Scores of a model on held-out rows: pure functions of host NumPy arrays, shared by the
evaluate route, a job's test split and permutation importance, so they can never disagree.

    classification_report(y, proba, labels)   y (n,) int class indices into labels,
                                              proba (n, k) class probabilities (rows sum to 1)
    regression_report(y, pred)                y, pred (n,) or (n, k) in the target's units
    SCORES[name](y, outputs)                  one figure, higher or lower better as
                                              HIGHER_IS_BETTER says (permutation importance)
"""
from __future__ import annotations

import numpy as np

from .metrics import LOG_EPS, f1_macro_of


def confusion_matrix(y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: row = true class, column = predicted class; y, predicted (n,)."""
    return np.bincount(y * k + predicted, minlength=k * k).reshape(k, k)


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float((proba.argmax(axis=1) == y).mean())


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean -log p(true class), with p clipped to [LOG_EPS, 1 - LOG_EPS]."""
    p = np.clip(proba[np.arange(len(y)), y].astype(np.float64), LOG_EPS, 1 - LOG_EPS)
    return float(-np.log(p).mean())


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes that occur in the true labels."""
    support = confusion.sum(axis=1)
    present = support > 0
    return float((np.diag(confusion)[present] / support[present]).mean())


def precision_recall(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class (k,) precision tp / predicted and recall tp / true (0 where undefined)."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    return (np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0),
            np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0))


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve: the probability that a random positive row scores above a
    random negative one (ties count half), from average ranks (Mann-Whitney U). positive (n,)
    bool, score (n,). None when one of the two classes is absent."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    # Average rank of each run of tied scores (1-based).
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(score)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def classification_report(y: np.ndarray, proba: np.ndarray, labels: list) -> dict:
    """{metrics, confusion_matrix} of class indices y (n,) against probabilities (n, k):
    accuracy, balanced_accuracy, log_loss, f1_macro, per-class precision and recall (keyed
    by label), and roc_auc for two classes (class labels[1] as the positive one)."""
    k = proba.shape[1]
    confusion = confusion_matrix(y, proba.argmax(axis=1), k)
    precision, recall = precision_recall(confusion)
    metrics = {
        "accuracy": accuracy(y, proba),
        "balanced_accuracy": balanced_accuracy(confusion),
        "log_loss": log_loss(y, proba),
        "f1_macro": f1_macro_of(confusion),
        "precision": {str(label): float(p) for label, p in zip(labels, precision)},
        "recall": {str(label): float(r) for label, r in zip(labels, recall)},
    }
    if k == 2:
        metrics["roc_auc"] = roc_auc(y == 1, proba[:, 1].astype(np.float64))
    return {"metrics": metrics,
            "confusion_matrix": {"labels": list(labels), "counts": confusion.tolist()}}


def r2(y: np.ndarray, pred: np.ndarray) -> float | None:
    """1 - SS_res / SS_tot per output, averaged over outputs (scikit-learn's uniform
    average); None when every output is constant."""
    y2 = np.asarray(y, np.float64).reshape(len(y), -1)
    p2 = np.asarray(pred, np.float64).reshape(y2.shape)
    ss_res = ((y2 - p2) ** 2).sum(axis=0)
    ss_tot = ((y2 - y2.mean(axis=0)) ** 2).sum(axis=0)
    defined = ss_tot > 0
    if not defined.any():
        return None
    return float((1 - ss_res[defined] / ss_tot[defined]).mean())


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    r = np.asarray(pred, np.float64).reshape(np.shape(y)) - np.asarray(y, np.float64)
    return float(np.sqrt((r * r).mean()))


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    r = np.asarray(pred, np.float64).reshape(np.shape(y)) - np.asarray(y, np.float64)
    return float(np.abs(r).mean())


def regression_report(y: np.ndarray, pred: np.ndarray) -> dict:
    """{metrics: r2, rmse, mae} of targets y against predictions, both in the target's units."""
    return {"metrics": {"r2": r2(y, pred), "rmse": rmse(y, pred), "mae": mae(y, pred)},
            "confusion_matrix": None}


SCORES = {
    "accuracy": accuracy,
    "log_loss": log_loss,
    "f1_macro": lambda y, proba: f1_macro_of(
        confusion_matrix(y, proba.argmax(axis=1), proba.shape[1])),
    "r2": lambda y, pred: r2(y, pred) or 0.0,
    "rmse": rmse,
    "mae": mae,
}
"""One figure per metric name (the names of engine.metrics.METRICS), for permutation
importance: (y, outputs) -> float."""

HIGHER_IS_BETTER = {"accuracy": True, "log_loss": False, "f1_macro": True, "r2": True,
                    "rmse": False, "mae": False}
