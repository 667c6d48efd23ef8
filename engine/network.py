"""Network: the user-facing object. Parameters, prediction and gradients live here; the
training loop is in training.py and save/restore in state.py, which use only the public
members below (backend, weights, activations, loss_function, build, set_params,
forward_chunks, run)."""
from __future__ import annotations

import threading

import numpy as np

from . import memory
from .activations import ACTIVATIONS
from .backend import Backend, check_dtype, get_backend
from .data import check_data, prepare_inputs, prepare_targets
from .initializers import init_params
from .losses import LOSSES
from .propagation import Workspace, backward, forward, output_delta
from .spec import as_network_spec
from .state import from_bytes, network_from_state, network_state, to_bytes
from .training import fit

SMALL_PREDICT_ROWS = memory.SMALL_ROWS


def labels_from_outputs(spec, outputs) -> np.ndarray:
    """Class labels from a classifier's outputs (n, n_L), as Network.predict_labels gives them:
    argmax for a softmax output, f > 0.5 as 0/1 for a sigmoid output ((n,) for one unit,
    (n, k) for several). Regression networks raise ValueError."""
    spec = as_network_spec(spec)
    out = spec.layers[-1].activation
    if out == "softmax":
        return outputs.argmax(axis=1)
    if out == "sigmoid":
        labels = (outputs > 0.5).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels
    raise ValueError(f"labels need a classifier (softmax or sigmoid output); this network's "
                     f"output is {out!r} with loss {spec.loss!r}: use predict")


class Network:
    """A multi-layer perceptron trained by backpropagation.

    spec: NetworkSpec or dict. n_inputs: input width (else taken from the first data seen).
    seed: seeds the initial weights (and shuffling, unless the training spec has its own).
    dtype: "float32" (default) or "float64". device: "cpu", "gpu" (CuPy) or "auto".
    """

    def __init__(self, spec, n_inputs: int | None = None, seed: int = 0,
                 dtype: str = "float32", device: str = "cpu"):
        self.spec = as_network_spec(spec)
        self.dtype = check_dtype(dtype)
        self._backend = get_backend(device)
        self.device = self._backend.device
        self.seed = int(seed)
        self._acts = tuple(ACTIVATIONS[layer.activation] for layer in self.spec.layers)
        self._loss = LOSSES[self.spec.loss]
        self._params: list | None = None
        self._small_rows = memory.SMALL_ROWS
        self.n_inputs: int | None = None
        self.epochs_done = 0
        self.stopped = False
        self.stopped_early = False
        self.kept_epoch: int | None = None
        """The epoch whose weights the net holds after fit (earlier than epochs_done when early
        stopping restored its best weights)."""
        self.run = None
        """training.RunState once fit has started: what state() saves to resume exactly."""
        self._small = threading.local()      # .ws: a small predict Workspace per thread
        if n_inputs is not None:
            self.build(int(n_inputs))

    # -- what the training loop and state.py use ---------------------------------------------
    @property
    def backend(self) -> Backend:
        """The device's array module (backend.xp) and host transfers."""
        return self._backend

    @property
    def activations(self) -> tuple:
        """phi of each layer, from the first hidden one to the output (activations.py)."""
        return self._acts

    @property
    def loss_function(self):
        """The spec's loss (losses.py)."""
        return self._loss

    @property
    def weights(self) -> list | None:
        """The live [(W, b), ...] on the device (None before build): the training loop and the
        optimizers update them in place. `params` gives host copies."""
        return self._params

    def build(self, n_inputs: int) -> None:
        """Draw the initial weights for `n_inputs` inputs, once; later calls only check that
        the width is the same."""
        if self._params is None:
            if n_inputs < 1:
                raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
            self.n_inputs = n_inputs
            self._set_params(init_params(self.spec.init, self.widths, self.seed))
        elif n_inputs != self.n_inputs:
            raise ValueError(f"the data has {n_inputs} features per row, but the network "
                             f"takes {self.n_inputs} inputs")

    # -- parameters --------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        return self.spec.layers[-1].units

    @property
    def widths(self) -> list[int]:
        """[n_inputs, units_1, ..., units_L]."""
        return [self.n_inputs, *(layer.units for layer in self.spec.layers)]

    @property
    def params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """A host copy of [(W, b), ...]; W (units_out, units_in), b (units_out,). Assign to set."""
        if self._params is None:
            raise ValueError("the network has no parameters yet: give n_inputs, or fit or "
                             "predict on data first")
        host = self._backend.to_host
        return [(np.array(host(W)), np.array(host(b))) for W, b in self._params]

    @params.setter
    def params(self, params) -> None:
        self.set_params(params)

    def set_params(self, params, check_finite: bool = True) -> None:
        """Set [(W, b), ...] (host or device arrays), checking shapes against the spec and,
        unless check_finite=False (a saved state restored as it was), that all are finite."""
        params = [(self._backend.to_host(W), self._backend.to_host(b)) for W, b in params]
        if len(params) != len(self.spec.layers):
            raise ValueError(f"expected {len(self.spec.layers)} (W, b) pairs, one per layer, "
                             f"got {len(params)}")
        n_inputs = self.n_inputs if self.n_inputs is not None else params[0][0].shape[-1]
        widths = [n_inputs, *(layer.units for layer in self.spec.layers)]
        for l, (W, b) in enumerate(params, start=1):
            want_w, want_b = (widths[l], widths[l - 1]), (widths[l],)
            if W.shape != want_w or b.shape != want_b:
                raise ValueError(f"layer {l}: W must have shape {want_w} and b {want_b}, got "
                                 f"{W.shape} and {b.shape}")
            if check_finite and not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise ValueError(f"layer {l}: weights contain NaN or infinite values")
        self.n_inputs = n_inputs
        self._set_params(params)

    def _set_params(self, params) -> None:
        # One converting copy (asarray, then array, copied float64 weights twice), row-major
        # so that BLAS reads W in place.
        xp = self._backend.xp
        self._params = [(xp.array(W, dtype=self.dtype, order="C"),
                         xp.array(b, dtype=self.dtype, order="C")) for W, b in params]
        self._small_rows = memory.small_rows(self.widths, self.dtype)

    # -- inference ---------------------------------------------------------------------------
    def forward_chunks(self, X, rows: int | None = None):
        """Yield (start, z^(L), x^(L)) per chunk of `rows` rows of the device array X (default:
        as many as fit memory.WORKSPACE_BYTES); the arrays are reused by the next chunk."""
        rows = rows or memory.chunk_rows(self.widths, self.dtype)
        xp = self._backend.xp
        ws = Workspace(xp, self.dtype, self.widths, min(len(X), rows), backward=False)
        with np.errstate(over="ignore", under="ignore"):
            for start in range(0, len(X), ws.rows):
                chunk = X[start:start + ws.rows]
                f = forward(xp, self._params, self._acts, chunk, ws)
                yield start, ws.z_out[:len(chunk)], f

    def _device_inputs(self, X):
        if not hasattr(X, "ndim") or X.ndim != 2:
            X = np.asarray(X)
            if X.ndim != 2:
                raise ValueError(f"X must be a 2-D array (rows, features), got shape {X.shape}")
        self.build(X.shape[1])
        return prepare_inputs(X, self._backend, self.dtype)

    def _small_workspace(self) -> Workspace:
        """This thread's forward buffers for up to memory.small_rows rows (threads may
        predict at once, so each has its own)."""
        ws = getattr(self._small, "ws", None)
        if ws is None:
            ws = Workspace(self._backend.xp, self.dtype, self.widths, self._small_rows,
                           backward=False)
            self._small.ws = ws
        return ws

    def predict(self, X) -> np.ndarray:
        """Outputs x^(L) for every row of X, as a host array (n, n_outputs); probabilities for
        a softmax output. Buffers beyond X and the answer stay within memory.WORKSPACE_BYTES
        (memory.predict_bytes gives the whole)."""
        X = self._device_inputs(X)
        if len(X) <= self._small_rows:
            with np.errstate(over="ignore", under="ignore"):
                f = forward(self._backend.xp, self._params, self._acts, X,
                            self._small_workspace())
            return np.array(self._backend.to_host(f))    # a copy: the buffers are reused
        out = np.empty((len(X), self.n_outputs), dtype=self.dtype)
        for start, _, f in self.forward_chunks(X):
            out[start:start + len(f)] = self._backend.to_host(f)
        return out

    def predict_labels(self, X) -> np.ndarray:
        """labels_from_outputs(spec, predict(X)): argmax for a softmax output, f > 0.5 as 0/1
        for a sigmoid output. Regression networks raise ValueError."""
        return labels_from_outputs(self.spec, self.predict(X))

    def loss_and_grads(self, X, Y) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
        """Mean loss over the rows of (X, Y) and its gradients [(dL/dW, dL/db), ...] (host
        arrays shaped like params), by one forward and one backward pass; weights unchanged."""
        check_data(self.spec, X, Y, n_inputs=self.n_inputs)
        X = self._device_inputs(X)
        T = prepare_targets(self.spec, Y, self._backend, self.dtype)
        xp = self._backend.xp
        ws = Workspace(xp, self.dtype, self.widths, len(X))
        grads = [None] * len(self._params)

        def keep(l, W, b, dW, db):
            grads[l] = (np.array(self._backend.to_host(dW)), np.array(self._backend.to_host(db)))

        with np.errstate(over="ignore", under="ignore"):
            f = forward(xp, self._params, self._acts, X, ws)
            z = ws.z_out[:len(X)]
            loss = float(self._loss.value_sum(z, f, T)) / len(X)
            output_delta(xp, self._loss, self._acts[-1], z, f, T, 1.0 / len(X), ws.deltas[-1])
            backward(xp, self._params, self._acts, X, ws, keep)
        return loss, grads

    # -- training and state ------------------------------------------------------------------
    def fit(self, X, Y, training=None, on_epoch=None, should_stop=None,
            target_scale=None) -> list[dict]:
        """Train from epoch epochs_done + 1 to training.epochs; return this call's epoch records.

        See training.fit for the record's fields, cancellation, early stopping and kept_epoch."""
        return fit(self, X, Y, training, on_epoch=on_epoch, should_stop=should_stop,
                   target_scale=target_scale)

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to resume, as plain host arrays (np.savez-ready, no pickle)."""
        return network_state(self)

    @classmethod
    def from_state(cls, state, device: str = "cpu") -> Network:
        """Rebuild a network saved by state() (a dict of arrays or a loaded .npz)."""
        return network_from_state(cls, state, device)

    def save_bytes(self) -> bytes:
        """state() as the bytes of an .npz file."""
        return to_bytes(self.state())

    @classmethod
    def from_bytes(cls, data: bytes, device: str = "cpu") -> Network:
        """Inverse of save_bytes."""
        return cls.from_state(from_bytes(data), device)

    def __repr__(self) -> str:
        shape = "-".join(str(w) for w in self.widths) if self.n_inputs else "?"
        return (f"Network({shape}, loss={self.spec.loss!r}, dtype={self.dtype!r}, "
                f"device={self.device!r}, epochs_done={self.epochs_done})")
