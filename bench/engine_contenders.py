"""The contenders of bench/engine.py, each run in its own worker process, and their shared
synthetic data and configurations."""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_FEATURES, N_CLASSES, HIDDEN = 784, 10, (512, 256)
LEARNING_RATE = 0.01
CONFIGS = {                     # name: (hidden activation, output, loss, batch size)
    "relu-ce-b256": ("relu", "softmax", "cross_entropy", 256),
    "sigmoid-se-b256": ("sigmoid", "sigmoid", "squared_error", 256),
    "relu-ce-b32": ("relu", "softmax", "cross_entropy", 32),
    "relu-ce-b1024": ("relu", "softmax", "cross_entropy", 1024),
}


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n x 784 float32 inputs and labels of 10 classes from a random linear teacher, built in
    chunks so no float64 copy of the data ever exists."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, N_FEATURES), np.float32)
    teacher = rng.standard_normal((N_FEATURES, N_CLASSES), dtype=np.float32)
    y = np.empty(n, np.int64)
    for i in range(0, n, 8192):
        chunk = X[i:i + 8192]
        rng.standard_normal(out=chunk, dtype=np.float32)
        y[i:i + 8192] = (chunk @ teacher).argmax(axis=1)
    return X, y


class EngineContender:
    def __init__(self, threads: int):
        from threadpoolctl import threadpool_limits
        self._limits = threadpool_limits(threads)
        sys.path.insert(0, ROOT)
        from engine import Network
        self.Network = Network

    def train(self, X, y, Y1h, config: str) -> None:
        hidden, out, loss, batch = CONFIGS[config]
        spec = {"layers": [{"units": u, "activation": hidden} for u in HIDDEN]
                + [{"units": N_CLASSES, "activation": out}], "loss": loss}
        target = y if loss == "cross_entropy" else Y1h
        self.Network(spec, seed=0).fit(X, target, {"optimizer": "sgd", "epochs": 1,
                                                   "learning_rate": LEARNING_RATE,
                                                   "batch_size": batch, "shuffle": True})

    def info(self) -> str:
        from threadpoolctl import threadpool_info
        blas = [f"{i['internal_api']} {i.get('version')} kernel={i.get('architecture')} "
                f"threads={i['num_threads']}" for i in threadpool_info()
                if i["user_api"] == "blas"]
        return f"numpy {np.__version__}: " + "; ".join(blas)


class TorchContender:
    def __init__(self, threads: int):
        import torch
        torch.set_num_threads(threads)
        self.torch = torch

    def train(self, X, y, Y1h, config: str) -> None:
        torch, nn = self.torch, self.torch.nn
        hidden, out, loss, batch = CONFIGS[config]
        act = nn.ReLU if hidden == "relu" else nn.Sigmoid
        widths = [N_FEATURES, *HIDDEN, N_CLASSES]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Linear(a, b), act()] if i < len(HIDDEN) else [nn.Linear(a, b)]
        if out == "sigmoid":
            layers.append(nn.Sigmoid())
        model = nn.Sequential(*layers)
        opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        Xt = torch.from_numpy(X)
        Tt = torch.from_numpy(y) if loss == "cross_entropy" else torch.from_numpy(Y1h)
        ce = nn.CrossEntropyLoss()
        perm = torch.randperm(len(X))
        for i in range(0, len(X), batch):
            idx = perm[i:i + batch]
            f = model(Xt.index_select(0, idx))
            t = Tt.index_select(0, idx)
            value = ce(f, t) if loss == "cross_entropy" else 0.5 * ((f - t) ** 2).sum() / len(idx)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()

    def info(self) -> str:
        cfg = self.torch.__config__.show()
        blas = "MKL" if "USE_MKL=ON" in cfg else "?"
        return (f"torch {self.torch.__version__}: BLAS {blas}, "
                f"{self.torch.backends.cpu.get_cpu_capability()}, "
                f"threads={self.torch.get_num_threads()}")


class SklearnContender:
    def __init__(self, threads: int):
        from threadpoolctl import threadpool_limits
        self._limits = threadpool_limits(threads)
        import sklearn
        self.sklearn = sklearn

    def train(self, X, y, Y1h, config: str) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        hidden, out, loss, batch = CONFIGS[config]
        common = dict(hidden_layer_sizes=HIDDEN, solver="sgd", batch_size=batch,
                      learning_rate_init=LEARNING_RATE, momentum=0.0, nesterovs_momentum=False,
                      alpha=0.0, max_iter=1, shuffle=True, tol=0.0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if loss == "cross_entropy":
                MLPClassifier(activation="relu", **common).fit(X, y)
            else:   # closest: logistic hidden layers, squared error, identity output
                MLPRegressor(activation="logistic", **common).fit(X, Y1h)

    def info(self) -> str:
        return f"scikit-learn {self.sklearn.__version__} (NumPy's BLAS)"


CONTENDERS = {"engine": EngineContender, "torch": TorchContender, "sklearn": SklearnContender}
"""Every contender by name, in the table's column order."""
