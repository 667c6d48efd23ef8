"""Tables through the service (issue 11), side by side in one run on a stack of its own:

- uploads: a 60000 x 784 numeric table as CSV, Parquet and NPZ, and the Palmer penguins table
  (text columns, NA) repeated to ~170,000 rows as CSV and Parquet: MB/s and the API process's
  peak RSS (VmHWM, reset before each upload) against the file's size;
- training on the 60000 x 784 set with preprocessing "auto" against "none" (the job's own
  started_at..finished_at, which includes loading and preparing the data), interleaved rounds;
- 1-row predict of a model trained on a numeric table, as a JSON record against a JSON array
  row (the same model, interleaved blocks of sequential requests), and a penguins record.

    .venv/bin/python bench/tables.py [--quick]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import palmerpenguins
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import service_cases as cases  # noqa: E402
from core.settings import Settings  # noqa: E402
from service.embedded_redis import free_port  # noqa: E402
from service.launcher import Stack  # noqa: E402

PENGUINS = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
FULL = {"rows": 60000, "penguin_copies": 500, "fit_epochs": 3, "fit_rounds": 2,
        "predict_blocks": 10, "predict_block": 200}
QUICK = {"rows": 6000, "penguin_copies": 50, "fit_epochs": 1, "fit_rounds": 1,
         "predict_blocks": 3, "predict_block": 50}
BODY_LIMIT = 1 << 30


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    sys.stdout.flush()


def parquet_of_csv(content: bytes) -> bytes:
    table = pacsv.read_csv(io.BytesIO(content), convert_options=pacsv.ConvertOptions(
        null_values=["NA"], strings_can_be_null=True))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def upload_row(api: httpx.Client, stack, label: str, filename: str, content: bytes,
               target: str) -> list:
    return cases.measured_upload(api, stack, label, len(content) / 1e6,
                                 files={"file": (filename, content)}, data={"target": target})


def uploads(api, stack, cfg) -> None:
    npz, csv = cases.dataset_files(cfg["rows"])
    penguins = PENGUINS.read_bytes()
    header, body = penguins.split(b"\n", 1)
    many = header + b"\n" + body * cfg["penguin_copies"]
    rows = [upload_row(api, stack, f"numeric {cfg['rows']}x784 CSV", "d.csv", csv, "label"),
            upload_row(api, stack, "numeric Parquet", "d.parquet", parquet_of_csv(csv), "label"),
            upload_row(api, stack, "numeric NPZ", "d.npz", npz, "y"),
            upload_row(api, stack, f"penguins x{cfg['penguin_copies']} CSV", "p.csv", many,
                       "species"),
            upload_row(api, stack, "penguins Parquet", "p.parquet", parquet_of_csv(many),
                       "species")]
    print_table("Uploads (multipart), API peak RSS (VmHWM)",
                ["file", "MB", "s", "MB/s", "idle RSS MB", "peak RSS MB", "peak/file",
                 "(peak-idle)/file"], rows)


def training(api, cfg) -> None:
    npz, _ = cases.dataset_files(cfg["rows"])
    dataset = api.post("/v1/datasets", files={"file": ("d.npz", npz)}).json()["id"]
    network = {"layers": [{"units": 512, "activation": "relu"},
                          {"units": 256, "activation": "relu"},
                          {"units": 10, "activation": "softmax"}], "loss": "cross_entropy"}
    times: dict[str, list[float]] = {"none": [], "auto": []}
    order = ["none", "auto", "auto", "none"] * cfg["fit_rounds"]
    for mode in order:
        answer = api.post("/v1/jobs", json={
            "dataset_id": dataset, "network": network, "preprocessing": mode,
            "training": {"optimizer": "adam", "epochs": cfg["fit_epochs"], "batch_size": 256,
                         "learning_rate": 0.001, "seed": 0}})
        answer.raise_for_status()
        job = cases.wait_job(api, answer.json()["id"])
        assert job["status"] == "succeeded", job
        times[mode].append(job["finished_at"] - job["started_at"])
    none, auto = statistics.median(times["none"]), statistics.median(times["auto"])
    print_table(f"Training {cfg['rows']} x 784 -> 512 -> 256 -> 10, {cfg['fit_epochs']} epoch(s) "
                f"of Adam at batch 256 (job seconds, median of {len(times['none'])})",
                ["preprocessing", "s", "runs", "vs none"],
                [["none", none, " ".join(f"{t:.2f}" for t in times["none"]), "1.00"],
                 ["auto", auto, " ".join(f"{t:.2f}" for t in times["auto"]),
                  f"{auto / none:.3f}"]])
    print(f"target: auto within 5% of none -> {'met' if auto <= 1.05 * none else 'MISSED'}")


def per_request(api, path: str, body: dict, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        api.post(path, json=body).raise_for_status()
    return (time.perf_counter() - start) / n


def predict_latency(api, cfg) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 20)) * rng.uniform(1, 1000, 20)
    y = (X[:, 0] / 1000 + X[:, 1] / 500 > 0).astype(int)
    names = [f"f{j}" for j in range(20)]
    lines = [",".join(names + ["label"])] + [",".join(f"{v:.6g}" for v in row) + f",{t}"
                                             for row, t in zip(X, y)]
    dataset = api.post("/v1/datasets", files={"file": ("t.csv", "\n".join(lines).encode())},
                       data={"target": "label"}).json()["id"]
    network = {"layers": [{"units": 64, "activation": "relu"},
                          {"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
    job = cases.wait_job(api, cases.submit(api, dataset, network, {"epochs": 2})["id"])
    path = f"/v1/models/{job['model_id']}/predict"
    array = {"inputs": [X[0].tolist()]}
    record = {"inputs": [dict(zip(names, X[0].tolist()))]}
    penguin_set = api.post("/v1/datasets", files={"file": ("p.csv", PENGUINS.read_bytes())},
                           data={"target": "species"}).json()["id"]
    penguin_job = cases.wait_job(api, cases.submit(api, penguin_set, {
        "layers": [{"units": 64, "activation": "relu"}, {"units": 3, "activation": "softmax"}],
        "loss": "cross_entropy"}, {"epochs": 2})["id"])
    penguin_path = f"/v1/models/{penguin_job['model_id']}/predict"
    penguin = {"inputs": [{"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": None,
                           "flipper_length_mm": 215, "body_mass_g": 5250, "sex": "female",
                           "year": 2008}]}
    for body, target in ((array, path), (record, path), (penguin, penguin_path)):
        per_request(api, target, body, 50)  # warm: model loaded, connection open
    runs: dict[str, list[float]] = {"array": [], "record": [], "penguin": []}
    for _ in range(cfg["predict_blocks"]):
        runs["array"].append(per_request(api, path, array, cfg["predict_block"]))
        runs["record"].append(per_request(api, path, record, cfg["predict_block"]))
        runs["penguin"].append(per_request(api, penguin_path, penguin, cfg["predict_block"]))
    array_s = statistics.median(runs["array"])
    rows = [[name, statistics.median(times) * 1e3, f"{statistics.median(times) / array_s:.2f}"]
            for name, times in (("20-column row as an array", runs["array"]),
                                ("20-column row as a record", runs["record"]),
                                ("penguin record (text, null)", runs["penguin"]))]
    print_table(f"1-row predict, sequential requests (median of {cfg['predict_blocks']} blocks "
                f"of {cfg['predict_block']})", ["input", "ms/request", "vs array"], rows)
    ratio = statistics.median(runs["record"]) / array_s
    print(f"target: record within 1.5x of array -> {'met' if ratio <= 1.5 else 'MISSED'} "
          f"({ratio:.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--only", default="upload,fit,predict",
                        help="comma-separated sections to run")
    args = parser.parse_args()
    cfg, only = (QUICK if args.quick else FULL), set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bench-tables-"))
    os.environ.pop("BACKPROP_REDIS_URL", None)
    stack = Stack(Settings(redis_url=None, data_dir=tmp / "data", key_prefix="bench"),
                  "127.0.0.1", free_port(), workers=1, log_dir=tmp / "logs",
                  extra_env={"BACKPROP_MAX_BODY_BYTES": str(BODY_LIMIT),
                             "BACKPROP_KEY_PREFIX": "bench", "BACKPROP_DATA_DIR": str(tmp / "data")})
    print(f"backprop-service tables bench: {'quick' if args.quick else 'full'} run, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, pyarrow "
          f"{pa.__version__}, logs in {tmp / 'logs'}", flush=True)
    try:
        stack.start()
        with httpx.Client(base_url=stack.url, timeout=600) as api:
            if "upload" in only:
                uploads(api, stack, cfg)
            if "fit" in only:
                training(api, cfg)
            if "predict" in only:
                predict_latency(api, cfg)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
