"""Forward and backward passes over preallocated buffers (the lecture's equations).

Shapes, for a batch of m rows and layer widths [n_0 = inputs, n_1, ..., n_L]:
    x^(0)  (m, n_0)        the batch, one sample per row
    z^(l) = x^(l-1) W^(l)T + b^(l),  x^(l) = phi(z^(l))        (m, n_l); W^(l) (n_l, n_{l-1})
    delta^(l) = dL/dz^(l)                                      (m, n_l)
    dL/dW^(l) = delta^(l)T x^(l-1),  dL/db^(l) = sum over rows of delta^(l)
    delta^(l-1) = (delta^(l) W^(l)) * phi'(x^(l-1))            (elementwise)
Rows are samples, so the lecture's column vectors appear transposed. The 1/m of the mean loss
(and any factor an optimizer asks for) is folded into delta^(L) once; being linear, it flows
into every gradient for free.
"""
from __future__ import annotations

import numpy as np

from . import blas
from .memory import TRANSPOSED_GEMM_ROWS


class Workspace:
    """Buffers for batches of up to `rows` rows, allocated once and reused by every batch.

    With backward=False only the forward pass's buffers exist (predict: a gradient buffer as
    large as W^(1) would cost more than a one-row forward pass). transposed_gemm (default:
    on the CPU for rows <= TRANSPOSED_GEMM_ROWS) picks affine's small-batch GEMM."""

    def __init__(self, xp, dtype: str, widths: list[int], rows: int, target_shape=None,
                 target_dtype=None, gather_inputs: bool = False, backward: bool = True,
                 transposed_gemm: bool | None = None):
        self.xp, self.dtype, self.rows = xp, dtype, rows
        self._units = max(widths[1:])
        self._zeros = None
        if transposed_gemm is None:
            transposed_gemm = xp is np and rows <= TRANSPOSED_GEMM_ROWS
        self.zt = xp.empty(rows * self._units, dtype) if transposed_gemm else None  # z^T
        self.acts = [xp.empty((rows, w), dtype) for w in widths[1:]]      # x^(l), l = 1..L
        self.z_out = xp.empty((rows, widths[-1]), dtype)                  # z^(L)
        self.deltas = self.grads = self.ones = None
        if backward:
            self.deltas = [xp.empty((rows, w), dtype) for w in widths[1:]]    # delta^(l)
            self.grads = [(xp.empty((o, i), dtype), xp.empty(o, dtype))
                          for i, o in zip(widths[:-1], widths[1:])]
            self.ones = xp.ones(rows, dtype)                               # db = 1^T delta
        self.x = xp.empty((rows, widths[0]), dtype) if gather_inputs else None
        self.t = (xp.empty((rows, *target_shape), target_dtype)
                  if target_shape is not None else None)

    def zeros(self, shape):
        """A read-only all-zero array of `shape` (m, n_l), made on first use."""
        if self._zeros is None:
            self._zeros = self.xp.zeros(self.rows * self._units, self.dtype)
        return self._zeros[:shape[0] * shape[1]].reshape(shape)


def gather_rows(xp, a, idx, out):
    """out <- a[idx] without a temporary (np.take buffers its output unless mode != 'raise')."""
    if xp is np:
        return a.take(idx, axis=0, out=out, mode="clip")
    return xp.take(a, idx, axis=0, out=out)


def affine(xp, prev, W, b, z, ws: Workspace):
    """z <- prev W^T + b;  prev (m, n_in), W (n_out, n_in), b (n_out,), z (m, n_out).

    OpenBLAS runs this GEMM up to 1.5x faster for a few rows (m <= 128) with the roles of the
    operands swapped, z^T = W prev^T (the lecture's column vectors); the transposing copy
    back into z then also adds b, replacing the bias pass."""
    m, n_out = z.shape
    if ws.zt is not None:
        zt = ws.zt[:n_out * m].reshape(n_out, m)
        xp.matmul(W, prev.T, out=zt)
        return xp.add(zt.T, b, out=z)
    xp.matmul(prev, W.T, out=z)
    z += b
    return z


def forward(xp, params, acts, x, ws: Workspace, loss=None, t=None):
    """Fill ws.acts[l][:m] with x^(l) and ws.z_out[:m] with z^(L); return x^(L) (m, n_L).

    With a loss and targets t, return (x^(L), the batch's summed loss) instead, letting a
    fused loss compute both at once (softmax + cross_entropy share the row sums)."""
    m = len(x)
    prev = x
    last = len(params) - 1
    for l, ((W, b), act) in enumerate(zip(params, acts)):
        out = ws.acts[l][:m]
        z = ws.z_out[:m] if l == last else out
        affine(xp, prev, W, b, z, ws)
        if l < last:
            prev = act.forward(out, ws.zeros(out.shape) if act.uses_zeros else None)
        elif loss is not None and loss.fused_activation == act.name and hasattr(
                loss, "forward_value_sum"):
            return out, loss.forward_value_sum(z, out, t)
        else:
            out[...] = z
            prev = act.forward(out, ws.zeros(out.shape) if act.uses_zeros else None)
    return prev if loss is None else (prev, loss.value_sum(ws.z_out[:m], prev, t))


def output_delta(xp, loss, act_out, z, f, t, scale: float, out):
    """out <- scale * dL/dz^(L) per row. May overwrite f (the caller is done with it)."""
    if loss.fused_activation == act_out.name:
        # softmax + cross_entropy and sigmoid + binary_cross_entropy are matched pairs:
        # dL/dz = f - y, with no phi' factor (it cancels against the loss's derivative).
        if t.ndim == 1:                          # integer labels: y is one-hot
            xp.multiply(f, scale, out=out)
            out[xp.arange(len(t)), t] -= scale
        else:
            xp.subtract(f, t, out=out)
            out *= scale
        return out
    # The general chain rule: delta^(L) = dL/df * phi_out'(z^(L)).
    xp.multiply(loss.grad_f(f, t), scale, out=out)
    return act_out.backprop_inplace(out, f)


def backward(xp, params, acts, x, ws: Workspace, on_layer, fused_step: bool = False):
    """Backpropagate ws.deltas[L-1][:m] down to layer 1.

    For each layer l (0-based, from the top) it fills ws.grads[l] and then calls
    on_layer(l, W, b, dW, db) once W^(l) is no longer needed, so an optimizer may update it
    there while its gradient is still in cache. Overwrites ws.acts[:-1] with phi'.
    With fused_step (plain SGD, lr folded into delta), W -= delta^T x^(l-1) happens inside
    the GEMM where the NumPy build allows it, and on_layer then gets dW = None.
    """
    m = len(x)
    for l in range(len(params) - 1, -1, -1):
        W, b = params[l]
        dW, db = ws.grads[l]
        delta = ws.deltas[l][:m]
        prev = x if l == 0 else ws.acts[l - 1][:m]
        if l > 0:                               # before W changes
            below = ws.deltas[l - 1][:m]
            xp.matmul(delta, W, out=below)
        if fused_step and blas.accumulate_at_b(W, delta, prev, -1.0):
            dW = None
        else:
            xp.matmul(delta.T, prev, out=dW)
        xp.matmul(ws.ones[:m], delta, out=db)  # a GEMV: twice as fast as sum(axis=0)
        if l > 0:
            acts[l - 1].backprop_inplace(below, prev)
        on_layer(l, W, b, dW, db)
