"""propagation: the forward pass's CPU fast paths give the results of the plain ones."""
import numpy as np
import pytest

from engine import ACTIVATIONS, Network
from engine import propagation as P
from engine_helpers import make_classification, spec


def test_relu_against_a_zero_array_matches_the_scalar_form():
    z = np.array([[-2.0, -0.0, 0.0, 3.5], [np.nan, np.inf, -np.inf, 1e-45]], np.float32)
    want = np.maximum(z, 0)
    got = ACTIVATIONS["relu"].forward(z.copy(), np.zeros_like(z))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def _net_and_batch(dtype, m, widths=(6, 9, 7, 3)):
    rng = np.random.default_rng(m)
    hidden = [{"units": u, "activation": "relu"} for u in widths[1:-1]]
    net = Network({"layers": [*hidden, {"units": widths[-1], "activation": "softmax"}],
                   "loss": "cross_entropy"}, n_inputs=widths[0], dtype=dtype)
    net.params = [(W, rng.normal(size=b.shape)) for W, b in net.params]
    return net, rng.normal(size=(m, widths[0])).astype(dtype)


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-6), ("float64", 1e-13)])
@pytest.mark.parametrize("m", [1, 5, 32])
def test_transposed_gemm_matches_the_row_gemm(dtype, rtol, m):
    net, x = _net_and_batch(dtype, m)
    outs = {}
    for transposed in (True, False):
        ws = P.Workspace(np, dtype, net.widths, m, transposed_gemm=transposed)
        assert (ws.zt is not None) == transposed
        f = P.forward(np, net.weights, net.activations, x, ws)
        outs[transposed] = [f.copy(), ws.z_out.copy(), *(a.copy() for a in ws.acts[:-1])]
    for a, b in zip(outs[True], outs[False]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_transposed_gemm_is_the_cpu_default_for_small_batches_only():
    widths = [5, 8, 3]
    assert P.Workspace(np, "float32", widths, P.TRANSPOSED_GEMM_ROWS).zt is not None
    assert P.Workspace(np, "float32", widths, P.TRANSPOSED_GEMM_ROWS + 1).zt is None


def test_fit_takes_the_same_path_with_either_gemm(monkeypatch):
    X, y = make_classification(n=200)
    training = {"optimizer": "sgd", "learning_rate": 0.2, "epochs": 3, "batch_size": 16,
                "validation_split": 0.2}
    fast = Network(spec(hidden=("relu", "tanh")), seed=1, dtype="float64")
    h_fast = fast.fit(X, y, training)
    monkeypatch.setattr(P, "TRANSPOSED_GEMM_ROWS", 0)
    plain = Network(spec(hidden=("relu", "tanh")), seed=1, dtype="float64")
    h_plain = plain.fit(X, y, training)
    for key in ("loss", "val_loss", "grad_norms", "phi_prime_mean"):
        np.testing.assert_allclose([r[key] for r in h_fast], [r[key] for r in h_plain],
                                   rtol=1e-10)
    for (W, b), (Wp, bp) in zip(fast.params, plain.params):
        np.testing.assert_allclose(W, Wp, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b, bp, rtol=1e-10, atol=1e-13)


def test_set_weights_are_row_major_copies_in_the_net_dtype():
    net = Network(spec(), n_inputs=5)
    W_f = np.asfortranarray(np.arange(40.0).reshape(8, 5))
    net.params = [(W_f, np.ones(8)), net.params[1]]
    W, b = net.weights[0]
    assert W.flags.c_contiguous and W.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(W, W_f)
    W_f[0, 0] = 99.0
    assert W[0, 0] == 0.0
