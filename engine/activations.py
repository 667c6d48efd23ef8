"""Activation functions phi and their derivatives, computed from the output f = phi(z).

Each derivative is written in terms of f, so the forward cache is all backprop needs, and
every operation works in place on preallocated buffers:

    forward(z, zeros)        z <- phi(z), returns z; zeros: None, or (if uses_zeros) a
                             read-only all-zero array shaped like z
    derivative(f)            a new array phi'(z), from f
    backprop_inplace(d, f)   d <- d * phi'(z); may overwrite f (no longer needed afterwards)
    sum_abs_derivative(f)    sum of |phi'(z)| over f's entries, as a 0-d array (or a number),
                             for the epoch record: few kernels, no big temporaries, and no
                             host sync on a GPU (the caller divides by f.size later)

softmax is an output-only activation: its Jacobian is not diagonal, so it is only allowed with
cross_entropy, whose fused delta f - y never needs it (see losses.py).
"""
from __future__ import annotations

from .backend import array_module

LEAKY_SLOPE = 0.01
"""Slope of leaky_relu for z < 0."""


class Activation:
    name = ""
    elementwise = True
    uses_zeros = False

    def forward(self, z, zeros=None):
        raise NotImplementedError

    def derivative(self, f):
        raise NotImplementedError

    def backprop_inplace(self, delta, f):
        delta *= self.derivative(f)
        return delta

    def sum_abs_derivative(self, f):
        return array_module(f).abs(self.derivative(f)).sum()


def _sum_square(f):
    flat = f.reshape(-1)
    return array_module(f).vdot(flat, flat)


def _sum_f_one_minus_f(f):
    """sum f (1 - f) = sum f - sum f^2, without an (m, n) temporary."""
    return f.sum() - _sum_square(f)


class Identity(Activation):
    name = "identity"

    def forward(self, z, zeros=None):           # phi(z) = z
        return z

    def derivative(self, f):                    # phi' = 1
        return array_module(f).ones_like(f)

    def backprop_inplace(self, delta, f):
        return delta

    def sum_abs_derivative(self, f):
        return float(f.size)


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, z, zeros=None):           # phi(z) = 1 / (1 + e^-z)
        xp = array_module(z)
        xp.negative(z, out=z)
        xp.exp(z, out=z)                        # may overflow to inf: 1/inf = 0 is right
        z += 1
        return xp.reciprocal(z, out=z)

    def derivative(self, f):                    # phi' = f (1 - f)
        return f * (1 - f)

    def backprop_inplace(self, delta, f):
        delta *= f
        array_module(f).subtract(1, f, out=f)
        delta *= f
        return delta

    def sum_abs_derivative(self, f):
        return _sum_f_one_minus_f(f)


class Tanh(Activation):
    name = "tanh"

    def forward(self, z, zeros=None):           # phi(z) = tanh z
        return array_module(z).tanh(z, out=z)

    def derivative(self, f):                    # phi' = 1 - f^2
        return 1 - f * f

    def backprop_inplace(self, delta, f):
        xp = array_module(f)
        xp.square(f, out=f)
        xp.subtract(1, f, out=f)
        delta *= f
        return delta

    def sum_abs_derivative(self, f):
        return f.size - _sum_square(f)


class Relu(Activation):
    name = "relu"

    uses_zeros = True

    def forward(self, z, zeros=None):           # phi(z) = max(z, 0)
        # Against a zero array NumPy's maximum is SIMD-vectorised; against the scalar 0 it
        # takes a ~4x slower loop (measured on NumPy 2.4). Same result, NaN included.
        return array_module(z).maximum(z, 0 if zeros is None else zeros, out=z)

    def derivative(self, f):                    # phi' = 1 where f > 0, else 0
        return (f > 0).astype(f.dtype)

    def backprop_inplace(self, delta, f):
        return array_module(f).multiply(delta, f > 0, out=delta)

    def sum_abs_derivative(self, f):               # the active units (f > 0)
        return array_module(f).count_nonzero(f)


class LeakyRelu(Activation):
    name = "leaky_relu"

    def forward(self, z, zeros=None):           # phi(z) = z for z > 0, else 0.01 z
        return array_module(z).maximum(z, LEAKY_SLOPE * z, out=z)

    def derivative(self, f):                    # phi' = 1 where f > 0, else 0.01
        xp = array_module(f)
        return xp.where(f > 0, 1.0, LEAKY_SLOPE).astype(f.dtype)


class Softplus(Activation):
    name = "softplus"

    def forward(self, z, zeros=None):           # phi(z) = log(1 + e^z), stable for large |z|
        return array_module(z).logaddexp(z, 0, out=z)

    def derivative(self, f):                    # phi' = sigmoid(z) = 1 - e^-f
        return -array_module(f).expm1(-f)

    def backprop_inplace(self, delta, f):
        xp = array_module(f)
        xp.negative(f, out=f)
        xp.expm1(f, out=f)
        xp.negative(f, out=f)
        delta *= f
        return delta


class Softmax(Activation):
    """Output only: f_k = e^{z_k} / sum_j e^{z_j}, row by row."""

    name = "softmax"
    elementwise = False

    def forward(self, z, zeros=None):
        xp = array_module(z)
        z -= z.max(axis=1, keepdims=True)       # shift for stability; f is unchanged
        xp.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def derivative(self, f):
        """The Jacobian's diagonal f (1 - f); reported per epoch, never used for backprop."""
        return f * (1 - f)

    def sum_abs_derivative(self, f):
        return _sum_f_one_minus_f(f)

    def backprop_inplace(self, delta, f):
        raise ValueError("softmax is only supported as the output of cross_entropy")


ACTIVATIONS: dict[str, Activation] = {
    a.name: a for a in (Identity(), Sigmoid(), Tanh(), Relu(), LeakyRelu(), Softplus(), Softmax())
}
"""Every activation by name; the API's allowed values come from here."""

OUTPUT_ONLY = frozenset({"softmax"})
"""Activations that may only appear on the output layer."""
