"""Optimizers: update one layer's (W, b) in place from its gradients.

The contract is tiny, so the training loop never knows any optimizer's maths:

    grad_scale(lr)                     the factor the caller folds into the gradients it
                                       passes (plain SGD takes lr there, saving a pass)
    begin_step()                       once per batch, before the layers' updates
    update(i, W, b, dW, db, lr)        layer i; dW, db are dL/dW, dL/db times grad_scale(lr)
                                       (scratch: an optimizer may overwrite them)
    fused_step                         True if W -= dW may happen inside the gradient's GEMM;
                                       update then gets dW = None and only updates b

Weight decay is L2 on weights only (biases are not decayed): g <- g + weight_decay * W, as
torch.optim applies it. Shapes: W (units_out, units_in), b (units_out,).
State for save/resume: arrays() -> {name: array}, scalars() -> JSON-safe dict, and
load(arrays, scalars).
"""
from __future__ import annotations

from .backend import array_module


class Optimizer:
    name = ""
    state_slots: tuple[str, ...] = ()
    """The buffers kept between steps (saved with the state); with any, a "scratch" too."""

    def __init__(self, training, params):
        self.weight_decay = training.weight_decay
        self._slots: dict[str, list] = {}
        self._params_like = params

    def _slot(self, name: str) -> list:
        """One zero buffer per parameter array (W1, b1, W2, b2, ...), made on first use."""
        if name not in self._slots:
            self._slots[name] = [array_module(p).zeros_like(p) for W, b in self._params_like
                                 for p in (W, b)]
        return self._slots[name]

    fused_step = False

    def grad_scale(self, lr: float) -> float:
        return 1.0

    def begin_step(self) -> None:
        pass

    def update(self, i: int, W, b, dW, db, lr: float) -> None:
        raise NotImplementedError

    def _decayed(self, j: int, W, dW):
        """dW + weight_decay * W, written into dW (the caller's buffer) when decay is on."""
        if self.weight_decay:
            scratch = self._slot("scratch")[j]
            array_module(W).multiply(W, self.weight_decay, out=scratch)
            dW += scratch
        return dW

    # -- state -------------------------------------------------------------------------------
    def arrays(self) -> dict:
        return {f"{name}.{j}": a for name, slot in self._slots.items() if name != "scratch"
                for j, a in enumerate(slot)}

    def scalars(self) -> dict:
        return {}

    def load(self, arrays: dict, scalars: dict) -> None:
        for key, value in arrays.items():
            name, j = key.rsplit(".", 1)
            slot = self._slot(name)
            slot[int(j)][...] = value


class SGD(Optimizer):
    """W <- W - lr (g + weight_decay W). The caller passes lr * g, so one pass suffices."""

    name = "sgd"

    def grad_scale(self, lr: float) -> float:
        return lr

    @property
    def fused_step(self) -> bool:
        return not self.weight_decay

    def update(self, i, W, b, dW, db, lr):
        if dW is not None:
            if self.weight_decay:
                W *= 1.0 - lr * self.weight_decay
            W -= dW
        b -= db


class GD(SGD):
    """The lecture's full-batch gradient descent: SGD on the whole data set at once."""

    name = "gd"


class Momentum(Optimizer):
    """v <- momentum v + g;  W <- W - lr v   (torch.optim.SGD with momentum, dampening 0)."""

    name = "momentum"
    state_slots = ("velocity",)
    nesterov = False

    def __init__(self, training, params):
        super().__init__(training, params)
        self.momentum = training.momentum

    def update(self, i, W, b, dW, db, lr):
        velocity, scratch = self._slot("velocity"), self._slot("scratch")
        for j, p, g in ((2 * i, W, self._decayed(2 * i, W, dW)), (2 * i + 1, b, db)):
            xp, v, step = array_module(p), velocity[j], scratch[j]
            v *= self.momentum
            v += g
            if self.nesterov:                   # step along g + momentum v instead of v
                xp.multiply(v, self.momentum, out=step)
                step += g
                step *= lr
            else:
                xp.multiply(v, lr, out=step)
            p -= step


class Nesterov(Momentum):
    """v <- momentum v + g;  W <- W - lr (g + momentum v)   (torch's nesterov=True)."""

    name = "nesterov"
    nesterov = True


class Adam(Optimizer):
    """m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    W <- W - lr m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps)   (torch.optim.Adam)."""

    name = "adam"
    state_slots = ("m", "v")

    def __init__(self, training, params):
        super().__init__(training, params)
        self.beta1, self.beta2, self.eps = training.beta1, training.beta2, training.eps
        self.t = 0

    def begin_step(self):
        self.t += 1

    def update(self, i, W, b, dW, db, lr):
        m1, m2, scratch = self._slot("m"), self._slot("v"), self._slot("scratch")
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        for j, p, g in ((2 * i, W, self._decayed(2 * i, W, dW)), (2 * i + 1, b, db)):
            xp, m, v, tmp = array_module(p), m1[j], m2[j], scratch[j]
            m *= self.beta1
            xp.multiply(g, 1.0 - self.beta1, out=tmp)
            m += tmp
            v *= self.beta2
            xp.multiply(g, g, out=tmp)
            tmp *= 1.0 - self.beta2
            v += tmp
            xp.sqrt(v, out=tmp)                 # tmp <- sqrt(v / c2) + eps
            tmp *= 1.0 / c2**0.5
            tmp += self.eps
            xp.divide(m, tmp, out=tmp)
            tmp *= lr / c1
            p -= tmp

    def scalars(self):
        return {"t": self.t}

    def load(self, arrays, scalars):
        super().load(arrays, scalars)
        self.t = int(scalars.get("t", 0))


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (GD, SGD, Momentum, Nesterov, Adam)
}
"""Every optimizer by name; the API's allowed values come from here."""
