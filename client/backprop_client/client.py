"""Client, Job and Model: upload data, train, follow a job, predict.

    from backprop_client import Client
    client = Client()                          # BACKPROP_URL, BACKPROP_API_KEY
    job = client.train(network, {"epochs": 40, "validation_split": 0.1}, X=X, y=y)
    job.wait()                                 # progress bar on stderr; JobFailed if it failed
    curves = job.history()                     # {"epoch", "loss", "val_loss", ...} as arrays
    labels = job.model().predict_labels(X_test)

A pandas DataFrame goes wherever X does (with target="column" instead of y).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np

from backprop_client import codec, tables
from backprop_client.errors import (ApiError, JobFailed, ServiceUnavailable, ValidationFailed,
                                    error_from)
from backprop_client.progress import ProgressBar
from backprop_client.sweeps import Sweep

DEFAULT_URL = "http://127.0.0.1:8000"  # what `backprop up` serves
JSON = "application/json"
FINISHED = frozenset({"succeeded", "failed", "canceled"})
PREDICT_CHUNK_ROWS = 50_000
"""Rows per predict request: below the service's default BACKPROP_MAX_PREDICT_ROWS."""
PREDICT_CHUNK_BYTES = 8 * 1024 * 1024
"""About this much body per predict request: well below the service's default body limit."""


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
    """A connection to one backprop-service. `url` and `api_key` default to the environment's
    BACKPROP_URL and BACKPROP_API_KEY (http://127.0.0.1:8000, no key: what `backprop up`
    serves)."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0):
        self.url = (url or os.environ.get("BACKPROP_URL") or DEFAULT_URL).rstrip("/")
        key = os.environ.get("BACKPROP_API_KEY", "") if api_key is None else api_key
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
    def upload(self, X, y=None, *, target: str | list[str] | None = None,
               name: str | None = None, ignore: str | list[str] | None = None,
               columns: dict[str, str] | None = None, dtype: str | None = None) -> dict:
        """Upload a table or arrays; returns the dataset as the API shows it (a dict: id,
        n_samples, and for a table its `columns` and `target` schema).

        - a pandas DataFrame, `target` naming its label column: sent as CSV (NaN, None and NA
          become empty cells, which the service reads as missing); `ignore` leaves columns
          out, `columns` overrides a guessed kind ({"year": "categorical"});
        - arrays X (n, features) and y (n,) or (n, outputs): sent as NPZ, binary."""
        if tables.is_dataframe(X):
            if y is not None:
                raise ValueError("a DataFrame holds its labels: name their column with "
                                 "target=..., instead of passing y")
            name = name or "table"
            return self._upload_file(f"{name}.csv", tables.dataframe_csv(X), name=name,
                                     dtype=dtype, **tables.table_form(target, ignore, columns))
        if y is None:
            raise ValueError("X given without y: pass the targets as y=..., or a pandas "
                             "DataFrame with target='column'")
        if target or ignore or columns:
            raise ValueError("target=, ignore= and columns= name a DataFrame's columns; arrays "
                             "take their labels as y=...")
        name = name or "data"
        return self._upload_file(f"{name}.npz", codec.npz_bytes(X=np.asarray(X), y=np.asarray(y)),
                                 name=name, dtype=dtype)

    def upload_csv(self, path: str | os.PathLike, target: str | list[str] | None = None,
                   name: str | None = None, dtype: str | None = None,
                   ignore: str | list[str] | None = None,
                   columns: dict[str, str] | None = None) -> dict:
        """Upload a CSV file with a header row, as it is; `target` names the label column(s)
        (default: the last), `ignore` and `columns` as in upload()."""
        path = Path(path)
        return self._upload_file(path.name, path.read_bytes(), name=name or path.stem,
                                 dtype=dtype, **tables.table_form(target, ignore, columns))

    def _upload_file(self, filename: str, content: bytes, **form: str | None) -> dict:
        return self.request("POST", "/v1/datasets", files={"file": (filename, content)},
                            data={k: v for k, v in form.items() if v is not None}).json()

    def datasets(self) -> list[dict]:
        return self.get("/v1/datasets")["datasets"]

    def dataset(self, dataset_id: str) -> dict:
        return self.get(f"/v1/datasets/{dataset_id}")

    # -- jobs --------------------------------------------------------------------------------
    def train(self, network: dict | None = None, training: dict | None = None, *,
              dataset: str | dict | None = None, X=None, y=None,
              target: str | list[str] | None = None, ignore: str | list[str] | None = None,
              columns: dict[str, str] | None = None, **options: Any) -> Job:
        """Submit a training job on an uploaded `dataset` (id or upload() result), or on X
        uploaded first (arrays with y, or a DataFrame with target; see upload()). `options`
        are the job's other fields: device, dtype, seed, timeout_s, ... A network or training
        left as None is chosen by the service from the data (README: Defaults)."""
        if (dataset is None) == (X is None):
            raise ValueError("give either dataset=... or the data: X=..., y=... (arrays) or "
                             "X=frame, target='column' (a DataFrame)")
        if dataset is None:
            dataset = self.upload(X, y, target=target, ignore=ignore, columns=columns,
                                  dtype=options.get("dtype"))
        else:
            if target is not None or columns is not None:
                raise ValueError("target= and columns= shape an upload; an uploaded dataset "
                                 "keeps the target and column kinds it was uploaded with")
            if ignore is not None:
                options["preprocessing"] = ignoring(options.get("preprocessing"), ignore)
        dataset_id = dataset["id"] if isinstance(dataset, dict) else dataset
        body = {"dataset_id": dataset_id, **options}
        if network is not None:
            body["network"] = network
        if training is not None:
            body["training"] = training
        return Job(self, self.request("POST", "/v1/jobs", json=body).json())

    def job(self, job_id: str) -> Job:
        return Job(self, self.get(f"/v1/jobs/{job_id}"))

    def jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first, optionally only those with `status` (queued, running, ...)."""
        return [Job(self, info) for info in self.get("/v1/jobs", status=status,
                                                     limit=limit)["jobs"]]

    def model(self, model_id: str) -> Model:
        return Model(self, self.get(f"/v1/models/{model_id}"))

    # -- sweeps ------------------------------------------------------------------------------
    def sweep(self, space: dict, base: dict | None = None, *, dataset: str | dict,
              **options: Any) -> Sweep:
        """Start a hyperparameter sweep on an uploaded `dataset` (id or upload() result):
        trials drawn from `space` ({path: [choices] | {"log_uniform": [a, b]} | ...}) around
        the job fields `base`. `options`: strategy ("asha", "random", "grid"), trials,
        max_epochs, min_epochs, reduction_factor, metric, seed, max_runtime_s, parallel."""
        dataset_id = dataset["id"] if isinstance(dataset, dict) else dataset
        body = {"dataset_id": dataset_id, "base": base or {}, "space": space, **options}
        return Sweep(self, self.request("POST", "/v1/sweeps", json=body).json())

    def get_sweep(self, sweep_id: str) -> Sweep:
        return Sweep(self, self.get(f"/v1/sweeps/{sweep_id}"))

    def sweeps(self, limit: int = 100) -> list[Sweep]:
        """Newest first, without their trials (get_sweep for those)."""
        return [Sweep(self, info) for info in self.get("/v1/sweeps", limit=limit)["sweeps"]]


def ignoring(preprocessing: str | dict | None, ignore: str | list[str]) -> str | dict:
    """A job's `preprocessing` field that also leaves out the `ignore` columns of a dataset
    already uploaded (at upload, ignore= is a form field instead). With "none" it is sent as
    given, and the API's answer names the conflict."""
    columns = [c.strip() for c in ignore.split(",")] if isinstance(ignore, str) else list(ignore)
    if preprocessing == "none":
        return {"mode": "none", "ignore": columns}
    spec = {"mode": "auto"} if preprocessing in (None, "auto") else dict(preprocessing)
    spec["ignore"] = [*spec.get("ignore", []), *(c for c in columns if c not in
                                                 spec.get("ignore", []))]
    return spec


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
    kept_epoch = property(lambda self: self.info.get("kept_epoch"))
    """The epoch whose weights the model keeps (early stopping restores the best);
    `metrics` are that epoch's."""
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
    """A trained model: predictions run in the API process, never through the queue.
    `input_columns` and `classes` are the API's own description (None for a model trained on
    plain arrays without them)."""

    def __init__(self, client: Client, info: dict):
        self.client, self.info = client, info

    def __repr__(self) -> str:
        return (f"Model({self.id!r}, task={self.task!r}, "
                f"{self.info.get('n_inputs')}->{self.info.get('n_outputs')})")

    id = property(lambda self: self.info["id"])
    task = property(lambda self: self.info["task"])
    n_inputs = property(lambda self: self.info["n_inputs"])
    n_outputs = property(lambda self: self.info["n_outputs"])
    input_columns = property(lambda self: self.info.get("input_columns"))
    classes = property(lambda self: self.info.get("classes"))
    kept_epoch = property(lambda self: self.info.get("kept_epoch"))
    metrics = property(lambda self: self.info.get("metrics") or {})
    test_metrics = property(lambda self: self.info.get("test_metrics"))
    feature_importance = property(lambda self: self.info.get("feature_importance"))
    """[{"column", "importance"}] per raw input column, or None."""

    def evaluate(self, X=None, *, dataset: str | dict | None = None,
                 csv: str | os.PathLike | None = None) -> dict:
        """{n_rows, metrics, confusion_matrix} on rows whose targets are known: X a table
        (DataFrame or records) with the target column(s), an uploaded `dataset` (id or
        upload() result), or a `csv` file with the target column(s)."""
        if sum(v is not None for v in (X, dataset, csv)) != 1:
            raise ValueError("give one of X=table (with the target column), dataset=..., "
                             "or csv=path")
        path = f"/v1/models/{self.id}/evaluate"
        if csv is not None:
            return self.client.request("POST", path, content=Path(csv).read_bytes(),
                                       headers={"Content-Type": "text/csv"}).json()
        if dataset is not None:
            dataset_id = dataset["id"] if isinstance(dataset, dict) else dataset
            return self.client.request("POST", path, json={"dataset_id": dataset_id}).json()
        rows = tables.records(X)
        if rows is None:
            raise ValueError("X must be a table (a DataFrame or a list of records) holding the "
                             "target column")
        return self.client.request("POST", path, json={"records": rows}).json()

    def _bodies(self, X) -> tuple[Iterator[bytes], str]:
        """(predict bodies, their Content-Type): a table (DataFrame, dict records) as JSON
        records, an array as .npy; each body below the service's row and size limits."""
        rows = tables.records(X)
        if rows is not None:
            return tables.records_bodies(rows, PREDICT_CHUNK_BYTES, PREDICT_CHUNK_ROWS), JSON
        X = np.asarray(X)
        X = X.reshape(1, -1) if X.ndim == 1 else X
        X = X if X.dtype.kind == "f" else X.astype(np.float64)
        step = max(1, min(PREDICT_CHUNK_ROWS, PREDICT_CHUNK_BYTES // max(X[:1].nbytes, 1)))
        return (codec.npy_bytes(X[start:start + step])
                for start in range(0, max(X.shape[0], 1), step)), codec.NPY

    def _post(self, bodies: Iterator[bytes], content_type: str,
              accept: str) -> Iterator[httpx.Response]:
        for body in bodies:
            yield self.client.request("POST", f"/v1/models/{self.id}/predict", content=body,
                                      headers={"Content-Type": content_type, "Accept": accept})

    def predict(self, X) -> np.ndarray:
        """The network's outputs, one row per input row (class probabilities for softmax,
        a regression in the target's units). X: an array (one row may come as 1-D), or a
        table (a pandas DataFrame, a list of {column: value} dicts; None/NaN are missing)."""
        bodies, content_type = self._bodies(X)
        if content_type == codec.NPY:
            return np.concatenate([codec.load_npy(answer.content)
                                   for answer in self._post(bodies, codec.NPY, codec.NPY)])
        return np.concatenate([np.asarray(answer.json()["outputs"], dtype=np.float64)
                               for answer in self._post(bodies, JSON, JSON)])

    def predict_labels(self, X) -> np.ndarray:
        """Class labels (classifiers only), as the service names them: a table's original
        class values (strings stay str, in an object array), else argmax for softmax and 0/1
        per output for multilabel (int64)."""
        if self.task == "regression":
            raise ValidationFailed(None, f"model {self.id} is a regression model: it has no "
                                         f"labels; use predict()")
        bodies, content_type = self._bodies(X)
        labels = [label for answer in self._post(bodies, content_type, JSON)
                  for label in answer.json()["labels"]]
        if any(isinstance(label, str) for label in labels):
            return np.array(labels, dtype=object)
        return np.asarray(labels, dtype=np.int64)

    def predict_csv(self, path: str | os.PathLike) -> Iterator[tuple[bytes, int]]:
        """Score a CSV file (header row): (answer CSV, rows) per piece sent, each the input rows
        with the predicted label and class probabilities appended. The header comes once,
        with the first piece."""
        for i, (body, rows) in enumerate(tables.csv_bodies(Path(path), PREDICT_CHUNK_BYTES,
                                                           PREDICT_CHUNK_ROWS)):
            answer = self.client.request("POST", f"/v1/models/{self.id}/predict", content=body,
                                         headers={"Content-Type": "text/csv",
                                                  "Accept": "text/csv"}).content
            yield (answer if i == 0 else answer.partition(b"\n")[2]), rows

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W (units_out, units_in), b (units_out,)), ...] per layer, fetched as NPZ."""
        answer = self.client.request("GET", f"/v1/models/{self.id}/weights",
                                     headers={"Accept": codec.NPZ})
        npz = codec.load_npz(answer.content)
        return [(npz[f"W{i}"], npz[f"b{i}"]) for i in range(len(npz) // 2)]
