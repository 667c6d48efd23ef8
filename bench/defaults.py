"""The default job (`{"dataset_id", "seed"}` alone) against scikit-learn's defaults, on real
tables (issue 20): per table and seed, 70% of the rows uploaded and trained on, the other 30%
scored with POST /v1/models/{id}/evaluate; scikit-learn's default MLPClassifier/MLPRegressor
and HistGradientBoosting fitted on the same rows in the usual imputing, scaling and one-hot
Pipeline. Scores are accuracy for classes, R^2 for regression; times are the job's
started_at..finished_at (loading and preparing included) and scikit-learn's fit.

    .venv/bin/python bench/defaults.py [--seeds 3] [--tables wine,iris,...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import palmerpenguins
import pandas as pd
from sklearn import datasets
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import Settings  # noqa: E402
from service.embedded_redis import free_port  # noqa: E402
from service.launcher import Stack  # noqa: E402

TABLES = {
    "wine": (lambda: datasets.load_wine(as_frame=True).frame, "target", "classification"),
    "breast_cancer": (lambda: datasets.load_breast_cancer(as_frame=True).frame, "target",
                      "classification"),
    "iris": (lambda: datasets.load_iris(as_frame=True).frame, "target", "classification"),
    "digits": (lambda: datasets.load_digits(as_frame=True).frame, "target", "classification"),
    "penguins": (palmerpenguins.load_penguins, "species", "classification"),
    "diabetes": (lambda: datasets.load_diabetes(as_frame=True, scaled=False).frame, "target",
                 "regression"),
}
TEST_FRACTION = 0.3


def split(frame: pd.DataFrame, target: str, seed: int):
    frame = frame[frame[target].notna()].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(len(frame) * (1 - TEST_FRACTION))
    return frame.iloc[order[:cut]].reset_index(drop=True), \
        frame.iloc[order[cut:]].reset_index(drop=True)


def sklearn_scores(train, test, target: str, task: str, seed: int) -> dict:
    features = [c for c in train.columns if c != target]
    text = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
    numbers = [c for c in features if c not in text]

    def prepare():
        return ColumnTransformer([
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
            ("text", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                   OneHotEncoder(handle_unknown="ignore")), text)])

    models = ({"mlp": MLPClassifier(random_state=seed),
               "hgb": HistGradientBoostingClassifier(random_state=seed)}
              if task == "classification" else
              {"mlp": MLPRegressor(random_state=seed),
               "hgb": HistGradientBoostingRegressor(random_state=seed)})
    found = {}
    for name, model in models.items():
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = make_pipeline(prepare(), model).fit(train[features], train[target])
        found[name] = (fitted.score(test[features], test[target]),
                       time.perf_counter() - started)
    return found


def default_job(api: httpx.Client, train, test, target: str, name: str, seed: int):
    """(held-out score, seconds, epochs, kept epoch) of the default job on `train`."""
    uploaded = api.post("/v1/datasets", files={"file": (f"{name}.csv", train.to_csv(
        index=False, na_rep="NA").encode())}, data={"target": target, "name": name})
    uploaded.raise_for_status()
    job = api.post("/v1/jobs", json={"dataset_id": uploaded.json()["id"], "seed": seed})
    job.raise_for_status()
    while True:
        info = api.get(f"/v1/jobs/{job.json()['id']}").json()
        if info["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.2)
    if info["status"] != "succeeded":
        raise RuntimeError(f"{name}: the default job {info['status']}: {info['error']}")
    records = [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                for k, v in row.items()} for row in test.to_dict(orient="records")]
    found = api.post(f"/v1/models/{info['model_id']}/evaluate", json={"records": records})
    found.raise_for_status()
    metrics = found.json()["metrics"]
    score = metrics["accuracy"] if "accuracy" in metrics else metrics["r2"]
    return score, info["finished_at"] - info["started_at"], info["progress"]["epoch"], \
        info["kept_epoch"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tables", default=",".join(TABLES))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-defaults-"))
    os.environ.pop("BACKPROP_REDIS_URL", None)
    stack = Stack(Settings(redis_url=None, data_dir=tmp / "data", key_prefix="bench"),
                  "127.0.0.1", free_port(), workers=1, log_dir=tmp / "logs",
                  extra_env={"BACKPROP_KEY_PREFIX": "bench",
                             "BACKPROP_DATA_DIR": str(tmp / "data")})
    print(f"default jobs vs scikit-learn: {args.seeds} seed(s), 70/30 splits, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    header = ("table", "task", "rows", "ours", "mlp", "hgb", "ours-hgb", "ours s", "mlp s",
              "hgb s", "epochs (kept)")
    print("  ".join(f"{h:>13}" for h in header), flush=True)
    gaps = []
    try:
        stack.start()
        with httpx.Client(base_url=stack.url, timeout=600) as api:
            for name in args.tables.split(","):
                load, target, task = TABLES[name]
                frame = load()
                runs = []
                for seed in range(args.seeds):
                    train, test = split(frame, target, seed)
                    ours = default_job(api, train, test, target, name, seed)
                    theirs = sklearn_scores(train, test, target, task, seed)
                    runs.append((ours[0], theirs["mlp"][0], theirs["hgb"][0], ours[1],
                                 theirs["mlp"][1], theirs["hgb"][1], ours[2], ours[3]))
                mean = np.mean(runs, axis=0)
                gaps.append(mean[0] - mean[2])
                cells = [name, task[:5], len(frame), *(f"{v:.3f}" for v in mean[:3]),
                         f"{mean[0] - mean[2]:+.3f}", *(f"{v:.2f}" for v in mean[3:6]),
                         f"{mean[6]:.0f} ({mean[7]:.0f})"]
                print("  ".join(f"{str(c):>13}" for c in cells), flush=True)
    finally:
        stack.stop()
    print(f"median gap to HistGradientBoosting (ours - hgb): {statistics.median(gaps):+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
