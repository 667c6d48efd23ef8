"""Loss functions d(f, y), summed over a batch's rows, and dL/df for the general chain rule.

Targets come in two forms (see data.py): integer class labels of shape (m,) for
cross_entropy, and float arrays of shape (m, k) for every other loss.

    value_sum(z, f, t)   sum over rows of the per-row loss (a 0-d array); z is the output
                         layer's pre-activation, used where it is more stable than f
    grad_f(f, t)         dd/df for one row, as an (m, k) array (general chain rule)
    fused_activation     the output activation whose delta^(L) is simply f - y
"""
from __future__ import annotations

from .backend import array_module

HUBER_DELTA = 1.0
"""Where huber switches from quadratic to linear (|f - y| = 1, as torch.nn.HuberLoss)."""


class Loss:
    name = ""
    fused_activation: str | None = None
    classification = False

    def value_sum(self, z, f, t):
        raise NotImplementedError

    def grad_f(self, f, t):
        raise NotImplementedError


class SquaredError(Loss):
    name = "squared_error"

    def value_sum(self, z, f, t):               # d = 1/2 sum_k (y_k - f_k)^2
        r = f - t
        return 0.5 * (r * r).sum()

    def grad_f(self, f, t):                     # dd/df = -(y - f)
        return f - t


class Huber(Loss):
    name = "huber"

    def value_sum(self, z, f, t):               # 1/2 r^2 for |r| <= 1, |r| - 1/2 beyond
        xp = array_module(f)
        a = xp.abs(f - t)
        q = xp.minimum(a, HUBER_DELTA)
        return (q * (a - 0.5 * q)).sum()

    def grad_f(self, f, t):                     # dd/df = clip(f - y, -1, 1)
        return array_module(f).clip(f - t, -HUBER_DELTA, HUBER_DELTA)


class CrossEntropy(Loss):
    """-log softmax(z)_y, from integer labels y. Only paired with a softmax output."""

    name = "cross_entropy"
    fused_activation = "softmax"
    classification = True

    def value_sum(self, z, f, t):               # d = log sum_j e^{z_j} - z_y
        xp = array_module(z)
        zmax = z.max(axis=1)
        lse = xp.log(xp.exp(z - zmax[:, None]).sum(axis=1)) + zmax
        return lse.sum() - z[xp.arange(z.shape[0]), t].sum()

    def forward_value_sum(self, z, f, t):
        """f <- softmax(z) and return value_sum, sharing the row maxima and sums."""
        xp = array_module(z)
        zmax = z.max(axis=1, keepdims=True)
        xp.subtract(z, zmax, out=f)
        shifted_zy = f[xp.arange(len(t)), t]          # z_y - max z
        xp.exp(f, out=f)
        sums = f.sum(axis=1, keepdims=True)
        f /= sums
        return xp.log(sums).sum() - shifted_zy.sum()  # sum of log sum e^(z - max) - (z_y - max)


class BinaryCrossEntropy(Loss):
    """-sum_k [y_k log f_k + (1 - y_k) log(1 - f_k)], f = sigmoid(z); one or several labels."""

    name = "binary_cross_entropy"
    fused_activation = "sigmoid"
    classification = True

    def value_sum(self, z, f, t):               # from z: max(z,0) - z y + log(1 + e^-|z|)
        xp = array_module(z)
        return (xp.maximum(z, 0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))).sum()


LOSSES: dict[str, Loss] = {
    loss.name: loss for loss in (SquaredError(), CrossEntropy(), BinaryCrossEntropy(), Huber())
}
"""Every loss by name; the API's allowed values come from here."""
