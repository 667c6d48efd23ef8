"""Weight initialisation: W_ij ~ N(0, sigma^2 / m) as in the lecture, biases zero.

m is the fan-in (units_in, the width W feeds from) by default and the fan-out (units_out, the
lecture's literal m_l) with fan="out". A named scheme replaces 1/m by its own variance factor.
The uniform distribution draws from (-a, a) with the same variance (a = sqrt(3 var)).
Weights are drawn in float64 on the host from one seeded generator, so every dtype and device
starts from the same numbers.
"""
from __future__ import annotations

import math

import numpy as np


def _normal(rng: np.random.Generator, shape, var: float) -> np.ndarray:
    return rng.normal(0.0, math.sqrt(var), size=shape)


def _uniform(rng: np.random.Generator, shape, var: float) -> np.ndarray:
    a = math.sqrt(3.0 * var)
    return rng.uniform(-a, a, size=shape)


INITS = {"normal": _normal, "uniform": _uniform}
"""Distributions by name: (rng, shape, variance) -> float64 array."""


def _lecture(fan_in: int, fan_out: int, m: int) -> float:
    return 1.0 / m


def _xavier(fan_in: int, fan_out: int, m: int) -> float:
    return 2.0 / (fan_in + fan_out)


def _he(fan_in: int, fan_out: int, m: int) -> float:
    return 2.0 / m


INIT_SCHEMES = {"xavier": _xavier, "he": _he}
"""Named variance factors (fan_in, fan_out, m) -> factor; sigma^2 multiplies it."""


def init_params(init, widths: list[int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """float64 (W, b) per layer for layer widths [n_inputs, units_1, ..., units_L].

    `init` is an InitSpec; W of layer l has shape (widths[l], widths[l-1]).
    """
    rng = np.random.default_rng(seed)
    draw = INITS[init.distribution]
    factor = INIT_SCHEMES[init.scheme] if init.scheme else _lecture
    params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        m = fan_in if init.fan == "in" else fan_out
        var = init.sigma**2 * factor(fan_in, fan_out, m)
        params.append((draw(rng, (fan_out, fan_in), var), np.zeros(fan_out)))
    return params
