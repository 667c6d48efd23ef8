"""Each optimizer decreases the loss, and matches torch.optim step for step."""
import numpy as np
import pytest

from engine import OPTIMIZERS, Network
from engine_helpers import make_classification, spec


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_every_optimizer_decreases_the_loss(optimizer):
    X, y = make_classification(n=90)
    net = Network(spec(units=10), seed=0)
    before, _ = net.loss_and_grads(X, y)
    lr = 0.01 if optimizer == "adam" else 0.1
    net.fit(X, y, {"optimizer": optimizer, "learning_rate": lr, "epochs": 15,
                   "batch_size": 16})
    after, _ = net.loss_and_grads(X, y)
    assert after < 0.7 * before


@pytest.mark.parametrize("optimizer", ["sgd", "gd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_steps_match_torch(optimizer, weight_decay):
    torch = pytest.importorskip("torch")
    X, y = make_classification(n=32, d=5, k=3)
    s = spec(hidden=("tanh",), units=6)
    net = Network(s, n_inputs=5, seed=7, dtype="float64")
    start = net.params
    training = {"optimizer": optimizer, "learning_rate": 0.05, "epochs": 3, "batch_size": None,
                "momentum": 0.8, "beta1": 0.85, "beta2": 0.99, "eps": 1e-7,
                "weight_decay": weight_decay, "shuffle": False}
    net.fit(X, y, training)

    weights = [torch.tensor(W, requires_grad=True) for W, _ in start]
    biases = [torch.tensor(b, requires_grad=True) for _, b in start]
    groups = [{"params": weights, "weight_decay": weight_decay},
              {"params": biases, "weight_decay": 0.0}]              # biases are not decayed
    if optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=0.05, betas=(0.85, 0.99), eps=1e-7)
    else:
        momentum = 0.8 if optimizer in ("momentum", "nesterov") else 0.0
        opt = torch.optim.SGD(groups, lr=0.05, momentum=momentum,
                              nesterov=optimizer == "nesterov")
    x, t = torch.tensor(X), torch.tensor(y)
    for _ in range(3):                                              # full batch: 3 steps
        opt.zero_grad()
        h = torch.tanh(x @ weights[0].T + biases[0])
        torch.nn.functional.cross_entropy(h @ weights[1].T + biases[1], t).backward()
        opt.step()
    for (W, b), tw, tb in zip(net.params, weights, biases):
        np.testing.assert_allclose(W, tw.detach().numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b, tb.detach().numpy(), rtol=1e-10, atol=1e-13)


def test_optimizer_state_survives_a_second_fit():
    """Momentum's velocity carries over between fit calls (else the second call restarts)."""
    X, y = make_classification(n=40)
    one = Network(spec(), seed=3, dtype="float64")
    one.fit(X, y, {"optimizer": "momentum", "epochs": 4, "batch_size": None})
    two = Network(spec(), seed=3, dtype="float64")
    two.fit(X, y, {"optimizer": "momentum", "epochs": 2, "batch_size": None})
    two.fit(X, y, {"optimizer": "momentum", "epochs": 4, "batch_size": None})
    for (W1, _), (W2, _) in zip(one.params, two.params):
        np.testing.assert_array_equal(W1, W2)
