import numpy as np


def make_classification(n=120, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    centres = rng.normal(scale=2.0, size=(k, d))
    y = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    return X, y


def make_regression(n=120, d=4, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Y = np.tanh(X @ rng.normal(size=(d, k))) + 0.05 * rng.normal(size=(n, k))
    return X, Y


def spec(hidden=("tanh",), out="softmax", loss="cross_entropy", units=8, k=3, **extra):
    layers = [{"units": units, "activation": a} for a in hidden]
    return {"layers": [*layers, {"units": k, "activation": out}], "loss": loss, **extra}


