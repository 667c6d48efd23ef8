"""propagation: the forward pass's CPU fast paths give the results of the plain ones."""
import numpy as np

from engine import ACTIVATIONS


def test_relu_against_a_zero_array_matches_the_scalar_form():
    z = np.array([[-2.0, -0.0, 0.0, 3.5], [np.nan, np.inf, -np.inf, 1e-45]], np.float32)
    want = np.maximum(z, 0)
    got = ACTIVATIONS["relu"].forward(z.copy(), np.zeros_like(z))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
