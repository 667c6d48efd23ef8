"""Permutation feature importance: how much a score drops when one input column's values are
shuffled among the rows, breaking its link to the target (Breiman 2001; scikit-learn's
permutation_importance). Per raw column: a column one-hot encoded over several input units
has its units shuffled together, as one column.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

REPEATS = 5
"""Shuffles per column; the importance is their mean drop."""


def permutation_importance(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                           y: np.ndarray, groups: list[tuple[str, list[int]]],
                           score: Callable[[np.ndarray, np.ndarray], float],
                           higher_is_better: bool, seed: int = 0,
                           repeats: int = REPEATS) -> list[dict]:
    """[{"column", "importance"}] per group (name, input units of X (n, d)), in the groups'
    order: the mean over `repeats` shuffles of the score's worsening (baseline - shuffled for
    a score where higher is better, shuffled - baseline otherwise), so that a column the
    model relies on scores above 0 and an unused one about 0. predict(X) -> outputs and
    score(y, outputs) -> float are the model's and the metric's."""
    rng = np.random.default_rng(seed)
    baseline = score(y, predict(X))
    sign = 1.0 if higher_is_better else -1.0
    shuffled = X.copy()
    found = []
    for name, units in groups:
        drops = []
        for _ in range(repeats):
            shuffled[:, units] = X[rng.permutation(len(X))][:, units]
            drops.append(sign * (baseline - score(y, predict(shuffled))))
        shuffled[:, units] = X[:, units]
        found.append({"column": name, "importance": float(np.mean(drops))})
    return found
