"""MLServer (Seldon's Open Inference Protocol server, with its scikit-learn runtime) as the
peer of bench/service.py's predict rows: the same weights as a scikit-learn MLPClassifier,
after a StandardScaler doing what our model's preparation does to its inputs.

MLServer pins an older FastAPI than ours, so it lives in a venv of its own, `.venv-mlserver`,
made on first use (`pip install mlserver mlserver-sklearn`, a few minutes; never a dependency
of the service). This file also runs inside that venv (`python mlserver_peer.py build ...`),
where it turns our NPZ weights into the pickled MLPClassifier that MLServer loads.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-mlserver"
# uvloop 0.22 broke MLServer 1.7.1's parallel workers (its default): "There is no current event
# loop in thread 'MainThread'" in every inference worker, so the model never loads.
PACKAGES = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]
MODEL = "mlp"
VERSION = PACKAGES[0].split("==")[1]


def ensure_venv() -> Path:
    """The venv's python, after creating the venv and installing MLServer if needed."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "mlserver").exists():
        print(f"installing {' and '.join(PACKAGES)} into {VENV} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return python


class MLServer:
    """`mlserver start` on a model folder holding our weights as an MLPClassifier; inference
    in the HTTP process (parallel_workers 0) or in N worker processes, BLAS threads as given."""

    def __init__(self, folder: Path, port: int, parallel_workers: int, blas_threads: str):
        self.folder, self.port = folder, port
        self.parallel_workers, self.blas_threads = parallel_workers, blas_threads
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/{MODEL}/infer"

    def start(self, weights_npz: bytes, scaling: dict | None, free_port) -> None:
        """scaling: {"mean": [...], "scale": [...]} of the inputs (our model's preparation),
        applied by a StandardScaler ahead of the network; None: the network alone."""
        python = ensure_venv()
        model = self.folder / MODEL
        model.mkdir(parents=True, exist_ok=True)
        (self.folder / "weights.npz").write_bytes(weights_npz)
        (self.folder / "scaling.json").write_text(json.dumps(scaling))
        subprocess.run([str(python), __file__, "build", str(self.folder / "weights.npz"),
                        str(self.folder / "scaling.json"), str(model / "model.joblib")],
                       check=True)
        # predict_proba: answer the class probabilities, as our `output` tensor does.
        (model / "model-settings.json").write_text(json.dumps({
            "name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "extra": {"predict_fn": "predict_proba"}}}))
        (self.folder / "settings.json").write_text(json.dumps({
            "debug": False, "host": "127.0.0.1", "http_port": self.port,
            "grpc_port": free_port(), "metrics_port": free_port(),
            "parallel_workers": self.parallel_workers}))
        threads = self.blas_threads
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}
        self.proc = subprocess.Popen([str(VENV / "bin" / "mlserver"), "start", str(self.folder)],
                                     cwd=self.folder, env=env, start_new_session=True,
                                     stdout=open(self.folder / "mlserver.log", "ab"),
                                     stderr=subprocess.STDOUT)
        import httpx
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                ready = f"http://127.0.0.1:{self.port}/v2/models/{MODEL}/ready"
                if httpx.get(ready, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"MLServer did not start; see {self.folder / 'mlserver.log'}")

    def pids(self) -> list[int]:
        """The server and its children (parallel inference workers)."""
        found = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        found += [int(p) for p in children.read_text().split()]
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def build(weights: str, scaling: str, out: str) -> None:
    """(inside .venv-mlserver) our W0, b0, W1, ... as a fitted MLPClassifier: relu hidden
    layers, softmax output, float32 weights (W transposed: scikit-learn's are (in, out)); after
    a StandardScaler with our preparation's means and scales when there is one."""
    import warnings

    import joblib
    import numpy as np
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    arrays = np.load(weights)
    n = sum(name.startswith("W") for name in arrays.files)
    Ws, bs = [arrays[f"W{i}"] for i in range(n)], [arrays[f"b{i}"] for i in range(n)]
    classes = Ws[-1].shape[0]
    clf = MLPClassifier(hidden_layer_sizes=tuple(W.shape[0] for W in Ws[:-1]),
                        activation="relu", max_iter=1)
    X = np.random.default_rng(0).standard_normal((2 * classes, Ws[0].shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # one iteration "did not converge"
        clf.fit(X.astype(np.float32), np.arange(2 * classes) % classes)  # shapes and classes
    clf.coefs_ = [np.ascontiguousarray(W.T, dtype=np.float32) for W in Ws]
    clf.intercepts_ = [b.astype(np.float32) for b in bs]
    moments = json.loads(Path(scaling).read_text())
    if moments is not None:
        scaler = StandardScaler()
        scaler.mean_ = np.asarray(moments["mean"], dtype=np.float64)
        scaler.scale_ = np.asarray(moments["scale"], dtype=np.float64)
        scaler.var_ = scaler.scale_ ** 2
        scaler.n_features_in_, scaler.n_samples_seen_ = len(scaler.mean_), 1
        clf = make_pipeline(scaler, clf)
    joblib.dump(clf, out)


if __name__ == "__main__" and sys.argv[1:2] == ["build"]:
    build(*sys.argv[2:5])
