"""Python client of backprop-service: upload data, train, follow a job, predict.

    from service.client import Client
    client = Client()                          # BACKPROP_URL, BACKPROP_API_KEY
    job = client.train(network, {"epochs": 40, "validation_split": 0.1}, X=X, y=y)
    job.wait()                                 # progress bar on stderr; JobFailed if it failed
    curves = job.history()                     # {"epoch", "loss", "val_loss", ...} as arrays
    labels = job.model().predict_labels(X_test)

Every error the API answers becomes an ApiError subclass carrying the API's message and field.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from worker.settings import get_settings

NPZ, NPY = "application/x-npz", "application/x-npy"
FINISHED = frozenset({"succeeded", "failed", "canceled"})
PREDICT_CHUNK_ROWS = 50_000
"""Rows per predict request: below the service's default BACKPROP_MAX_PREDICT_ROWS."""


class ApiError(Exception):
    """What the API refused, and why: `status` (HTTP, or None when no answer came), the API's
    `message` (it says what to change) and the `field` it names, if any."""

    def __init__(self, status: int | None, message: str, field: str | None = None,
                 details: list | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.details = status, message, field, details

    def __str__(self) -> str:
        return self.message if self.status is None else f"{self.message} (HTTP {self.status})"


class NotFound(ApiError):
    """404: no such dataset, job or model for this API key."""


class Unauthorized(ApiError):
    """401/403: the API key is missing or not valid."""


class ValidationFailed(ApiError):
    """400/413/415/422: the request does not fit; `field` names what to change."""


class ServiceUnavailable(ApiError):
    """503, or no answer at all: the service, its Redis or its workers are not reachable."""


class JobFailed(ApiError):
    """The job ended as failed: `message` and `epoch` are the worker's, `job` the final Job."""

    def __init__(self, job: Job):
        error = job.info.get("error") or {}
        self.job, self.epoch = job, error.get("epoch")
        where = f" at epoch {self.epoch}" if self.epoch else ""
        super().__init__(None, f"job {job.id} failed{where}: {error.get('message', 'no reason')}")


ERRORS_BY_STATUS = {400: ValidationFailed, 401: Unauthorized, 403: Unauthorized, 404: NotFound,
                    413: ValidationFailed, 415: ValidationFailed, 422: ValidationFailed,
                    503: ServiceUnavailable}


def error_from(answer: httpx.Response) -> ApiError:
    """The typed error for an HTTP error answer (the API's JSON error body when it has one)."""
    try:
        error = answer.json()["error"]
        message, field, details = error["message"], error.get("field"), error.get("details")
    except (ValueError, KeyError, TypeError):
        message, field, details = answer.text.strip()[:500] or answer.reason_phrase, None, None
    kind = ERRORS_BY_STATUS.get(answer.status_code,
                                ServiceUnavailable if answer.status_code >= 500 else ApiError)
    return kind(answer.status_code, message, field, details)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def history_arrays(records: list[dict]) -> dict[str, np.ndarray]:
    """Per-epoch records -> one array per numeric field: epoch (int), loss, val_loss, metric,
    seconds, ... as float (NaN where absent); list fields such as grad_norms as 2-D
    (epochs x layers). Text fields (metric_name) are left out."""
    keys = list(dict.fromkeys(k for record in records for k in record))
    out: dict[str, np.ndarray] = {}
    for key in keys:
        values = [record.get(key) for record in records]
        if any(isinstance(v, str) for v in values):
            continue
        if any(isinstance(v, list) for v in values):
            width = max(len(v) for v in values if isinstance(v, list))
            out[key] = np.array([v if isinstance(v, list) and len(v) == width
                                 else [np.nan] * width for v in values], dtype=np.float64)
        else:
            out[key] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if "epoch" in out:
        out["epoch"] = out["epoch"].astype(np.int64)
    if not records:
        out = {"epoch": np.zeros(0, np.int64), **{k: np.zeros(0) for k in
                                                  ("loss", "val_loss", "metric", "seconds")},
               "grad_norms": np.zeros((0, 0))}
    return out


class Client:
    """A connection to one backprop-service. `url` and `api_key` default to BACKPROP_URL and
    BACKPROP_API_KEY (http://127.0.0.1:8000, no key: what `backprop up` serves)."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0):
        settings = get_settings()
        self.url = (url or settings.url).rstrip("/")
        key = settings.api_key if api_key is None else api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP call; any error answer raises its typed ApiError."""
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(None, f"cannot reach the API at {self.url} ({exc}); start "
                                           f"it with `backprop up`, or set BACKPROP_URL or --url"
                                     ) from None
        if answer.is_error:
            raise error_from(answer)
        return answer

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items()
                                                 if v is not None}).json()

    def ready(self) -> dict:
        """/readyz: Redis reachable and a worker alive; ServiceUnavailable says which is not."""
        return self.get("/readyz")

    # -- datasets ----------------------------------------------------------------------------
    def upload(self, X, y, name: str = "data", dtype: str = "float32") -> dict:
        """Upload NumPy arrays (sent as NPZ, binary); returns the dataset (id, n_samples, ...)."""
        X, y = np.asarray(X), np.asarray(y)
        return self._upload_file(f"{name}.npz", npz_bytes(X=X, y=y), name=name, dtype=dtype)

    def upload_csv(self, path: str | os.PathLike, target: str | list[str] | None = None,
                   name: str | None = None, dtype: str = "float32") -> dict:
        """Upload a CSV with a header row; `target` names the label column(s) (default: last)."""
        path = Path(path)
        targets = ",".join([target] if isinstance(target, str) else target or [])
        return self._upload_file(path.name, path.read_bytes(), name=name or path.stem,
                                 dtype=dtype, target=targets or None)

    def _upload_file(self, filename: str, content: bytes, **form: str | None) -> dict:
        return self.request("POST", "/v1/datasets", files={"file": (filename, content)},
                            data={k: v for k, v in form.items() if v is not None}).json()

    def datasets(self) -> list[dict]:
        return self.get("/v1/datasets")["datasets"]

    def dataset(self, dataset_id: str) -> dict:
        return self.get(f"/v1/datasets/{dataset_id}")

    # -- jobs --------------------------------------------------------------------------------
    def train(self, network: dict, training: dict | None = None, *,
              dataset: str | dict | None = None, X=None, y=None, **options: Any) -> Job:
        """Submit a training job on an uploaded `dataset` (id or upload() result) or on
        arrays X, y (uploaded first). `options`: device, dtype, seed, timeout_s."""
        if (dataset is None) == (X is None):
            raise ValueError("give either dataset=... or X=..., y=...")
        if dataset is None:
            if y is None:
                raise ValueError("X given without y: pass the targets as y=...")
            dataset = self.upload(X, y, dtype=options.get("dtype", "float32"))
        dataset_id = dataset["id"] if isinstance(dataset, dict) else dataset
        body = {"network": network, "training": training or {}, "dataset_id": dataset_id,
                **options}
        return Job(self, self.request("POST", "/v1/jobs", json=body).json())

    def job(self, job_id: str) -> Job:
        return Job(self, self.get(f"/v1/jobs/{job_id}"))

    def jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first, optionally only those with `status` (queued, running, ...)."""
        return [Job(self, info) for info in self.get("/v1/jobs", status=status,
                                                     limit=limit)["jobs"]]

    def model(self, model_id: str) -> Model:
        return Model(self, self.get(f"/v1/models/{model_id}"))


class Job:
    """A training job as last seen; refresh() asks again, wait() follows it to the end."""

    def __init__(self, client: Client, info: dict):
        self.client, self.info = client, info
        self._epochs: list[dict] = []
        self._restarts_seen = info.get("restarts", 0)

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.status!r}, epoch={self.epoch}/{self.epochs})"

    id = property(lambda self: self.info["id"])
    status = property(lambda self: self.info["status"])
    done = property(lambda self: self.info["status"] in FINISHED)
    epoch = property(lambda self: self.info["progress"]["epoch"])
    epochs = property(lambda self: self.info["progress"]["epochs"])
    metrics = property(lambda self: self.info.get("metrics") or {})
    model_id = property(lambda self: self.info.get("model_id"))
    error = property(lambda self: self.info.get("error"))

    def refresh(self) -> Job:
        self.info = self.client.get(f"/v1/jobs/{self.id}")
        return self

    def wait(self, progress: bool = True, timeout: float | None = None) -> Job:
        """Poll until the job ends; with `progress`, draw a bar on stderr (epoch, loss,
        val_loss, ETA). Raises JobFailed if it failed, TimeoutError after `timeout` seconds."""
        bar = ProgressBar(sys.stderr) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.1  # short first polls for short jobs, then at most one a second
        try:
            while True:
                self.refresh()
                if bar is not None:
                    bar.show(self)
                if self.done:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
                time.sleep(pause)
                pause = min(pause * 1.5, 1.0)
        finally:
            if bar is not None:
                bar.close()
        if self.status == "failed":
            raise JobFailed(self)
        return self

    def history(self) -> dict[str, np.ndarray]:
        """Per-epoch arrays (see history_arrays); only new epochs are fetched on each call."""
        if self.info.get("restarts", 0) != self._restarts_seen:  # a resume retrains epochs
            self._epochs, self._restarts_seen = [], self.info.get("restarts", 0)
        answer = self.client.get(f"/v1/jobs/{self.id}/history", since_epoch=len(self._epochs))
        self._epochs.extend(answer["epochs"])
        return history_arrays(self._epochs)

    def cancel(self) -> Job:
        """A queued job never starts; a running one stops within an epoch, keeping its weights."""
        self.info = self.client.request("POST", f"/v1/jobs/{self.id}/cancel").json()
        return self

    def delete(self, keep_model: bool = False) -> None:
        self.client.request("DELETE", f"/v1/jobs/{self.id}",
                            params={"keep_model": str(keep_model).lower()})

    def model(self) -> Model:
        """The trained model (a canceled job keeps the weights it had)."""
        if self.model_id is None:
            self.refresh()
        if self.status == "failed":
            raise JobFailed(self)
        if self.model_id is None:
            raise ApiError(None, f"job {self.id} is {self.status} and has no model yet; "
                                 f"call wait() first")
        return self.client.model(self.model_id)


class Model:
    """A trained model: predictions run in the API process, never through the queue."""

    def __init__(self, client: Client, info: dict):
        self.client, self.info = client, info

    def __repr__(self) -> str:
        return f"Model({self.id!r}, task={self.task!r}, {self.n_inputs}->{self.n_outputs})"

    id = property(lambda self: self.info["id"])
    task = property(lambda self: self.info["task"])
    n_inputs = property(lambda self: self.info["n_inputs"])
    n_outputs = property(lambda self: self.info["n_outputs"])

    def _post_rows(self, X, accept: str) -> list[httpx.Response]:
        """X as .npy bodies, PREDICT_CHUNK_ROWS rows per request (one row may come as 1-D)."""
        X = np.asarray(X)
        X = X.reshape(1, -1) if X.ndim == 1 else X
        X = X if X.dtype.kind == "f" else X.astype(np.float64)
        return [self.client.request("POST", f"/v1/models/{self.id}/predict",
                                    content=npy_bytes(X[start:start + PREDICT_CHUNK_ROWS]),
                                    headers={"Content-Type": NPY, "Accept": accept})
                for start in range(0, max(X.shape[0], 1), PREDICT_CHUNK_ROWS)]

    def predict(self, X) -> np.ndarray:
        """The network's outputs, one row per input row (class probabilities for softmax)."""
        return np.concatenate([np.load(io.BytesIO(answer.content), allow_pickle=False)
                               for answer in self._post_rows(X, NPY)])

    def predict_labels(self, X) -> np.ndarray:
        """Class labels (classifiers only): argmax for softmax, 0/1 per output for multilabel."""
        if self.task == "regression":
            raise ValidationFailed(None, f"model {self.id} is a regression model: it has no "
                                         f"labels; use predict()")
        return np.concatenate([np.asarray(answer.json()["labels"], dtype=np.int64)
                               for answer in self._post_rows(X, "application/json")])

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W (units_out, units_in), b (units_out,)), ...] per layer, fetched as NPZ."""
        answer = self.client.request("GET", f"/v1/models/{self.id}/weights",
                                     headers={"Accept": NPZ})
        with np.load(io.BytesIO(answer.content), allow_pickle=False) as npz:
            return [(npz[f"W{i}"], npz[f"b{i}"]) for i in range(len(npz.files) // 2)]


def npy_bytes(X: np.ndarray) -> bytes:
    """One array as .npy bytes (the predict endpoint's binary body)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(X), allow_pickle=False)
    return buf.getvalue()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """One line per job: rewritten in place on a terminal; on a pipe or log file, a line per
    new epoch at most every `every_s` seconds, and the last one always."""

    def __init__(self, stream, width: int = 24, every_s: float = 1.0):
        self.stream, self.width, self.every_s = stream, width, every_s
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_line, self.last_at, self.shown = "", 0.0, False

    @staticmethod
    def render(info: dict, width: int = 24) -> str:
        progress, metrics = info["progress"], info.get("metrics") or {}
        filled = int(round(width * progress["fraction"]))
        digits = len(str(progress["epochs"]))
        line = (f"{info['id']} {info['status']:<9} [{'#' * filled}{'.' * (width - filled)}] "
                f"epoch {progress['epoch']:>{digits}}/{progress['epochs']}")
        for name in ("loss", "val_loss"):
            if metrics.get(name) is not None:
                line += f"  {name} {metrics[name]:.4g}"
        return line + f"  ETA {duration(progress.get('eta_s'))}"

    def show(self, job: Job) -> None:
        line, now = self.render(job.info, self.width), time.monotonic()
        if line == self.last_line:
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
        elif job.done or now - self.last_at >= self.every_s:
            self.stream.write(line + "\n")
            self.last_at = now
        else:
            return
        self.stream.flush()
        self.last_line, self.shown = line, True

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
