"""Finite differences against backprop, layer by layer, in float64."""
from __future__ import annotations

import numpy as np

GRADCHECK_MAX_ENTRIES = 400
"""Entries of W checked per layer at most (a seeded random subset beyond that); all of b."""


def _rel_error(a: np.ndarray, b: np.ndarray) -> float:
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def gradcheck(net, X, Y, eps: float = 1e-6, max_entries: int = GRADCHECK_MAX_ENTRIES,
              seed: int = 0, device: str = "cpu") -> list[dict]:
    """Compare net's backprop gradients with central differences (L(w+eps) - L(w-eps)) / 2eps.

    Works on a float64 copy of net on `device` ("gpu" checks the CuPy path's backprop), so
    `net` is untouched. Returns one dict per layer:
    {"layer": 1-based, "weight_rel_error", "bias_rel_error", "rel_error" (the larger),
     "checked": entries compared}, relative error = ||fd - bp|| / (||fd|| + ||bp||).
    """
    from .network import Network

    if net.n_inputs is None:
        net.build(np.shape(X)[1])
    twin = Network(net.spec, seed=net.seed, dtype="float64", device=device)
    twin.params = net.params
    _, grads = twin.loss_and_grads(X, Y)
    params = twin.params
    rng = np.random.default_rng(seed)
    report = []
    for l, ((W, b), (dW, db)) in enumerate(zip(params, grads)):
        w_idx = np.arange(W.size)
        if W.size > max_entries:
            w_idx = np.sort(rng.choice(W.size, max_entries, replace=False))
        errors = {}
        for name, arr, grad, idx in (("weight", W, dW, w_idx), ("bias", b, db, np.arange(b.size))):
            fd = np.empty(len(idx))
            flat = arr.reshape(-1)
            for j, i in enumerate(idx):
                keep = flat[i]
                flat[i] = keep + eps
                twin.params = params
                up, _ = twin.loss_and_grads(X, Y)
                flat[i] = keep - eps
                twin.params = params
                down, _ = twin.loss_and_grads(X, Y)
                flat[i] = keep
                fd[j] = (up - down) / (2 * eps)
            errors[name] = _rel_error(fd, grad.reshape(-1)[idx])
        twin.params = params
        report.append({"layer": l + 1, "weight_rel_error": errors["weight"],
                       "bias_rel_error": errors["bias"],
                       "rel_error": max(errors.values()), "checked": len(w_idx) + b.size})
    return report
