"""Backprop against finite differences and against torch.autograd, in float64."""
import numpy as np
import pytest

from engine import ACTIVATIONS, Network, gradcheck
from engine_helpers import make_classification, make_regression, spec

HIDDEN = sorted(set(ACTIVATIONS) - {"softmax"})
ELEMENTWISE_OUT = HIDDEN


def _net(s, d, seed=1):
    return Network(s, n_inputs=d, seed=seed, dtype="float64")


@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradcheck_every_hidden_activation(hidden):
    X, y = make_classification(n=24, d=4, k=3)
    net = _net(spec(hidden=(hidden, hidden), units=6), 4)
    report = gradcheck(net, X, y)
    assert [r["layer"] for r in report] == [1, 2, 3]
    for r in report:
        assert r["rel_error"] < 1e-6, r


@pytest.mark.parametrize("loss, out", [
    ("squared_error", o) for o in ELEMENTWISE_OUT] + [
    ("huber", "identity"), ("huber", "tanh"), ("binary_cross_entropy", "sigmoid")])
def test_gradcheck_every_loss_and_output(loss, out):
    X, Y = make_regression(n=24, d=4, k=2)
    if loss == "binary_cross_entropy":
        Y = (Y > 0).astype(float)
    if loss == "huber":
        Y = 3 * Y                                    # residuals on both sides of |r| = 1
    net = _net(spec(hidden=("tanh",), out=out, loss=loss, units=6, k=2), 4)
    for r in gradcheck(net, X, Y):
        assert r["rel_error"] < 1e-6, r


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    """The check can fail: break sigmoid's derivative and it must notice."""
    X, Y = make_regression(n=16, d=3, k=1)
    net = _net(spec(hidden=("sigmoid",), out="identity", loss="squared_error", k=1), 3)
    sigmoid = ACTIVATIONS["sigmoid"]
    monkeypatch.setattr(type(sigmoid), "backprop_inplace", lambda self, d, f: d)
    assert gradcheck(net, X, Y)[0]["rel_error"] > 1e-2


def test_gradcheck_leaves_float32_net_untouched():
    X, y = make_classification(n=16, d=4)
    net = Network(spec(), n_inputs=4)
    before = net.params
    report = gradcheck(net, X, y)
    assert all(r["rel_error"] < 1e-5 for r in report)
    for (W0, b0), (W1, b1) in zip(before, net.params):
        assert np.array_equal(W0, W1) and np.array_equal(b0, b1)
        assert W1.dtype == np.float32


# -- torch.autograd as an independent reference --------------------------------------------------

def _torch_loss_and_grads(net, X, Y):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    acts = {"identity": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "relu": torch.relu, "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
            "softplus": F.softplus, "softmax": lambda z: z}      # softmax folded into the loss
    params = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
              for W, b in net.params]
    x = torch.tensor(X)
    for (W, b), layer in zip(params, net.spec.layers):
        x = acts[layer.activation](x @ W.T + b)
    n = len(X)
    if net.spec.loss == "cross_entropy":
        loss = F.cross_entropy(x, torch.tensor(Y), reduction="sum") / n
    elif net.spec.loss == "binary_cross_entropy":
        loss = F.binary_cross_entropy(x, torch.tensor(Y), reduction="sum") / n
    elif net.spec.loss == "huber":
        loss = F.huber_loss(x, torch.tensor(Y), reduction="sum", delta=1.0) / n
    else:
        loss = 0.5 * ((x - torch.tensor(Y)) ** 2).sum() / n
    loss.backward()
    return float(loss.detach()), [(W.grad.numpy(), b.grad.numpy()) for W, b in params]


@pytest.mark.parametrize("hidden, out, loss", [
    ("relu", "softmax", "cross_entropy"), ("leaky_relu", "softmax", "cross_entropy"),
    ("softplus", "sigmoid", "binary_cross_entropy"), ("sigmoid", "sigmoid", "squared_error"),
    ("tanh", "identity", "huber"), ("identity", "softplus", "squared_error"),
    ("tanh", "relu", "squared_error"),
])
def test_values_and_gradients_match_torch(hidden, out, loss):
    if loss == "cross_entropy":
        X, Y = make_classification(n=40, d=5, k=3)
    else:
        X, Y = make_regression(n=40, d=5, k=3)
        Y = (Y > 0).astype(float) if loss == "binary_cross_entropy" else 2 * Y
    net = _net(spec(hidden=(hidden, hidden), out=out, loss=loss, units=7, k=3), 5)
    ref_loss, ref_grads = _torch_loss_and_grads(net, X, Y)
    got_loss, got_grads = net.loss_and_grads(X, Y)
    assert got_loss == pytest.approx(ref_loss, rel=1e-10)
    for (dW, db), (rW, rb) in zip(got_grads, ref_grads):
        np.testing.assert_allclose(dW, rW, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(db, rb, rtol=1e-8, atol=1e-12)


def test_predict_matches_torch_softmax():
    torch = pytest.importorskip("torch")
    X, y = make_classification(n=10, d=5, k=4)
    net = _net(spec(hidden=("relu",), k=4), 5)
    (W1, b1), (W2, b2) = [(torch.tensor(W), torch.tensor(b)) for W, b in net.params]
    ref = torch.softmax(torch.relu(torch.tensor(X) @ W1.T + b1) @ W2.T + b2, dim=1).numpy()
    np.testing.assert_allclose(net.predict(X), ref, rtol=1e-12)
    assert np.array_equal(net.predict_labels(X), ref.argmax(axis=1))


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
@hypothesis.given(
    hidden=st.lists(st.sampled_from(HIDDEN), min_size=0, max_size=3),
    head=st.sampled_from([("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"),
                          ("identity", "squared_error"), ("tanh", "huber")]),
    n=st.integers(1, 9), d=st.integers(1, 4), k=st.integers(2, 3), seed=st.integers(0, 99))
def test_gradcheck_on_random_networks(hidden, head, n, d, k, seed):
    out, loss = head
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if loss == "cross_entropy":
        Y = rng.integers(0, k, n)
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (n, k))
    else:
        Y = 2 * rng.normal(size=(n, k))
    net = _net({"layers": [{"units": 3, "activation": a} for a in hidden]
                + [{"units": k, "activation": out}], "loss": loss}, d, seed=seed)
    for r in gradcheck(net, X, Y):
        assert r["rel_error"] < 1e-6, (r, hidden, head)
