"""The per-epoch metric: accuracy for classifiers, R^2 for regression, summed batch by batch.

    batch_score(f, t)  for accuracy: correctly predicted rows in the batch (a 0-d array;
                       with several sigmoid labels each label counts 1/k of a row);
                       for R^2: the residual sum of squares sum (f - y)^2
    finish(total, n, ss_tot)  the epoch's figure (None when R^2 is undefined)
"""
from __future__ import annotations



class Accuracy:
    name = "accuracy"

    def batch_score(self, f, t):
        if t.ndim == 1:                                      # softmax + integer labels
            return (f.argmax(axis=1) == t).sum()
        return ((f > 0.5) == (t > 0.5)).sum() / t.shape[1]    # sigmoid labels

    def finish(self, total: float, n: int, ss_tot: float) -> float | None:
        return total / n


class R2:
    name = "r2"

    def batch_score(self, f, t):
        r = f - t
        return (r * r).sum()

    def finish(self, total: float, n: int, ss_tot: float) -> float | None:
        return 1.0 - total / ss_tot if ss_tot > 0 else None


def metric_for(loss) -> Accuracy | R2:
    return Accuracy() if loss.classification else R2()


def total_sum_of_squares(t) -> float:
    """sum over rows and columns of (y - column mean)^2 (0 for class labels)."""
    if t.ndim == 1:
        return 0.0
    centred = t - t.mean(axis=0)
    return float((centred * centred).sum())
