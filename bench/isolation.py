"""Isolation: how long GET /healthz takes while one tenant works the API hard, next to the idle
figure. The stack is the one `backprop up` starts (embedded Valkey, the API, 2 workers), with
two tenants' keys; tenant `heavy` runs, one scenario at a time and then all at once:

- 100,000-row predicts (an .npy body, 64 inputs, 256 hidden units), back to back;
- 64 MiB NPZ uploads, back to back (each dataset deleted after);
- 50 training jobs queued at once (and trained by the 2 workers meanwhile);
- 40 MiB JSON uploads, back to back (decoded in a decoder process: JSON parsing holds the GIL,
  and from a decoder thread this row read p99 741 ms);
- predict bodies that cost far more than their size (issue 22, item 5): a 195 KiB CSV of
  100,000 one-cell rows against a 2,000-column model, a 28 MiB UINT8 column tensor and a 30 MiB
  BYTES tensor over /v2, back to back, with the API's memory growth (VmHWM over VmRSS before);
- slow records predicts (24 kB, 8,000 records x 2,000 columns) on two connections while tenant
  `probe` uploads a 50-row CSV over and over (item 7: two decoder slots, shared fairly), with
  the upload's p99.

Then the attacks of issue 22 (items 4, 6, 8, 9 and 10), each with the API's memory growth (peak RSS
over the row, from /proc, the model already in the API's cache) next to /healthz, against
targets of p99 < 50 ms and growth < 200 MB:

- exports of a 49M-parameter model (the default BACKPROP_MAX_PARAMETERS allows 50M): ONNX,
  JSON weights (a 1 GB body), and both at once, back to back;
- slowloris: --dawdlers connections that send half a request and a byte of header every
  second, never finishing (the API closes them after BACKPROP_HTTP_HEADER_TIMEOUT_S, and
  holds at most BACKPROP_MAX_CONNECTIONS);
- uploads: a Parquet dictionary bomb (600 bytes, 800 MB of text once expanded), JSON records
  with a key each (139 KB), 100,000-column CSV and Parquet tables, and listing 50 datasets of
  4000 columns each.

A separate process probes /healthz on a fixed schedule (every --interval-ms) and times each
probe from its scheduled start, so a stall counts against every probe it delays (no
coordinated omission). The target is p99 under 50 ms, and for the attack and predict rows API
growth under 200 MB. Run:
    .venv/bin/python bench/isolation.py [--seconds 8] [--interval-ms 20] [--attacks-only]
        [--only NAME] [--predict-bounds-only]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from core.codec import arrays_to_npz  # noqa: E402
from core.records import ModelRecord, new_id  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import Store  # noqa: E402
from service.embedded_redis import free_port  # noqa: E402
from service.launcher import Stack  # noqa: E402

from bench.upload_attacks import UploadAttacks  # noqa: E402

KEYS = {"heavy": "heavy-bench-key-1", "probe": "probe-bench-key-2"}
TARGET_P99_MS = 50.0
TARGET_GROWTH_MB = 200.0
BIG_LAYERS = (4000, 8000, 2000, 2)  # 48.0M parameters, 192 MB as float32
N_INPUTS, HIDDEN = 64, 256
PREDICT_ROWS = 100_000
UPLOAD_BYTES = 64 * 2**20


def probe(url: str, interval_s: float, seconds: float, out) -> None:
    """In its own process: GET /healthz at t0 + k * interval; latency from the scheduled time."""
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        start = time.perf_counter()
        k = 0
        while True:
            scheduled = start + k * interval_s
            if scheduled > start + seconds:
                break
            now = time.perf_counter()
            if now < scheduled:
                time.sleep(scheduled - now)
            assert client.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - scheduled)
            k += 1
    out.put(latencies)


class Heavy:
    """The heavy tenant's workloads; each runs its action back to back until stopped."""

    def __init__(self, url: str):
        self.client = httpx.Client(base_url=url, timeout=300,
                                   headers={"Authorization": f"Bearer {KEYS['heavy']}"})
        rng = np.random.default_rng(0)
        X = rng.normal(size=(2000, N_INPUTS)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.int64)
        self.model_id = self._train(X, y)
        buf = io.BytesIO()
        np.save(buf, rng.normal(size=(PREDICT_ROWS, N_INPUTS)).astype(np.float32))
        self.predict_body = buf.getvalue()
        rows = UPLOAD_BYTES // (N_INPUTS * 4)
        buf = io.BytesIO()
        np.savez(buf, X=rng.normal(size=(rows, N_INPUTS)).astype(np.float32),
                 y=(np.arange(rows) % 2).astype(np.int64))
        self.npz = buf.getvalue()
        Xj = rng.normal(size=(240_000, 16)).round(6)
        self.json_body = (b'{"X": ' + str(Xj.tolist()).encode() + b', "y": '
                          + str((np.arange(len(Xj)) % 2).tolist()).encode() + b"}")
        self.dataset_id = self.client.post("/v1/datasets", files={"file": (
            "small.npz", _npz(X, y))}).json()["id"]

    def _train(self, X, y) -> str:
        job = self.client.post("/v1/jobs", json={
            "network": {"layers": [{"units": HIDDEN, "activation": "relu"},
                                   {"units": 2, "activation": "softmax"}],
                        "loss": "cross_entropy"},
            "data": {"X": X.tolist(), "y": y.tolist()}, "training": {"epochs": 1}}).json()
        return self._wait(job["id"])["model_id"]

    def _wait(self, job_id: str) -> dict:
        while (job := self.client.get(f"/v1/jobs/{job_id}").json())["status"] in (
                "queued", "running"):
            time.sleep(0.1)
        assert job["status"] == "succeeded", job
        return job

    def predict(self) -> None:
        answer = self.client.post(f"/v1/models/{self.model_id}/predict",
                                  content=self.predict_body,
                                  headers={"Content-Type": "application/x-npy",
                                           "Accept": "application/x-npy"})
        assert answer.status_code == 200, answer.text[:300]

    def upload_npz(self) -> None:
        answer = self.client.post("/v1/datasets", files={"file": ("big.npz", self.npz)})
        assert answer.status_code == 201, answer.text[:300]
        self.client.delete(f"/v1/datasets/{answer.json()['id']}")

    def upload_json(self) -> None:
        answer = self.client.post("/v1/datasets", content=self.json_body,
                                  headers={"Content-Type": "application/json"})
        assert answer.status_code == 201, answer.text[:300]
        self.client.delete(f"/v1/datasets/{answer.json()['id']}")

    def queue_jobs(self, n: int = 50) -> list[str]:
        body = {"dataset_id": self.dataset_id, "training": {"epochs": 200, "batch_size": 32},
                "network": {"layers": [{"units": 64, "activation": "tanh"},
                                       {"units": 2, "activation": "softmax"}],
                            "loss": "cross_entropy"}}
        return [self.client.post("/v1/jobs", json={**body, "seed": i}).json()["id"]
                for i in range(n)]

    def cancel(self, ids: list[str]) -> None:
        for job_id in ids:
            self.client.post(f"/v1/jobs/{job_id}/cancel")


class Attacks:
    """Issue 22's attacks on the API process: exports of a big model."""

    def __init__(self, stack: Stack):
        self.url, self.api_pid = stack.url, stack.api.pid
        self.client = httpx.Client(base_url=stack.url, timeout=600,
                                   headers={"Authorization": f"Bearer {KEYS['heavy']}"})
        self.model_id = self._store_big_model(stack)
        assert self.client.get(f"/v1/models/{self.model_id}").status_code == 200  # cached

    def _store_big_model(self, stack: Stack) -> str:
        """A 48M-parameter model written as a job's end writes one (training it here would
        take hours)."""
        rng = np.random.default_rng(0)
        named, layers = {}, []
        for i, (n_in, n_out) in enumerate(zip(BIG_LAYERS, BIG_LAYERS[1:])):
            named[f"W{i}"] = (rng.standard_normal((n_out, n_in), np.float32) * 0.01)
            named[f"b{i}"] = np.zeros(n_out, np.float32)
            layers.append({"units": n_out, "activation": "relu" if n_out > 2 else "softmax"})
        model_id = new_id("model")
        meta = ModelRecord(id=model_id, tenant="heavy", job_id=new_id("job"),
                           network={"layers": layers, "loss": "cross_entropy"},
                           n_inputs=BIG_LAYERS[0], n_outputs=2, task="classification",
                           dtype="float32", epochs_trained=1, metrics={})
        Store(redis.Redis.from_url(stack.env["BACKPROP_REDIS_URL"], socket_timeout=300)).put_model(
            meta, arrays_to_npz(named))
        return model_id

    def _download(self, path: str) -> None:
        with self.client.stream("GET", f"/v1/models/{self.model_id}/{path}") as answer:
            assert answer.status_code == 200, answer.read()[:300]
            for _ in answer.iter_raw():
                pass

    def export_onnx(self) -> None:
        self._download("onnx")

    def export_json_weights(self) -> None:
        self._download("weights")


def slowloris(url: str, count: int, stop: threading.Event) -> dict:
    """`count` connections dribbling header bytes until `stop`; how many the API closed."""
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(count):
        try:
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-slow: ")
            socks.append(sock)
        except OSError:
            break
    closed = set()
    while not stop.wait(1.0):
        for i, sock in enumerate(socks):
            if i not in closed:
                try:
                    sock.sendall(b"x")
                except OSError:
                    closed.add(i)
    for sock in socks:
        sock.close()
    return {"opened": len(socks), "closed by the API": len(closed)}


class PeakRss:
    """The API process's resident memory growth over a block (VmHWM, reset at the start)."""

    def __init__(self, pid: int):
        self.pid, self.grew = pid, 0.0

    def _kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def __enter__(self) -> "PeakRss":
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.before = self._kb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.grew = (self._kb("VmHWM") - self.before) / 1024


def attack_row(name: str, latencies: list, grew_mb: float, ran: str) -> str:
    ms = np.array(latencies) * 1000
    p50, p99, worst = np.percentile(ms, 50), np.percentile(ms, 99), ms.max()
    latency = "met" if p99 < TARGET_P99_MS else "missed"
    memory = "met" if grew_mb < TARGET_GROWTH_MB else "missed"
    return (f"{name:<34}{len(ms):>7}{p50:>8.1f}{p99:>9.1f}{worst:>9.1f}{grew_mb:>9.0f}"
            f"  p99<50ms {latency:<6} +<200MB {memory:<6} {ran}")


def run_attacks(stack: Stack, seconds: float, interval: float, dawdlers: int,
                only: str = "") -> None:
    """The attack rows; with `only`, just those whose name holds it (any case)."""
    exports = ("ONNX export, 48M parameters", "JSON weights export, 48M params",
               "both exports at once")
    print(f"{'attack (issue 22)':<34}{'probes':>7}{'p50 ms':>8}{'p99 ms':>9}{'max ms':>9}"
          f"{'API +MB':>9}  targets", flush=True)
    if any(only.lower() in name.lower() for name in exports):
        attacks = Attacks(stack)
        for name, actions in zip(exports, ([attacks.export_onnx], [attacks.export_json_weights],
                                           [attacks.export_onnx, attacks.export_json_weights])):
            if only.lower() in name.lower():
                with PeakRss(attacks.api_pid) as memory:
                    latencies, counts = measure(stack.url, seconds, interval, actions)
                print(attack_row(name, latencies, memory.grew, _ran(counts)), flush=True)
    name = f"slowloris, {dawdlers} connections"
    if only.lower() in name.lower():
        stop, outcome = threading.Event(), {}
        dribbler = threading.Thread(target=lambda: outcome.update(
            slowloris(stack.url, dawdlers, stop)), daemon=True)
        with PeakRss(stack.api.pid) as memory:
            dribbler.start()
            latencies, _ = measure(stack.url, seconds, interval, [])
            stop.set()
            dribbler.join(120)
        print(attack_row(name, latencies, memory.grew,
                         ", ".join(f"{v} {k}" for k, v in outcome.items())), flush=True)
    run_upload_attacks(stack, seconds, interval, only)


def run_upload_attacks(stack: Stack, seconds: float, interval: float, only: str = "") -> None:
    """Rows for items 4, 6 and 9: /healthz and the API's growth while each runs."""
    attacks = UploadAttacks(stack.url, KEYS["heavy"])
    for name, action, size in (
            ("Parquet dictionary bomb (item 4)", attacks.parquet_bomb, len(attacks.bomb)),
            ("records, a key each (item 6)", attacks.records_with_a_key_each,
             len(attacks.keys)),
            ("CSV 100,000 columns (item 9)", attacks.wide_csv, len(attacks.wide)),
            ("Parquet 100,000 columns (item 9)", attacks.wide_parquet,
             len(attacks.wide_parquet_file))):
        if only.lower() not in name.lower():
            continue
        with PeakRss(stack.api.pid) as memory:
            latencies, counts = measure(stack.url, seconds, interval, [action])
        print(attack_row(name, latencies, memory.grew,
                         f"{_ran(counts)} ({size:,} bytes each)"), flush=True)
    width = 4000   # the widest table of the default limit, stored 50 times, then listed
    if only.lower() not in f"listing 50 {width}-column datasets":
        return
    table = ",".join(f"c{i}" for i in range(width)) + "\n" + ",".join(["1"] * width) + "\n"
    for _ in range(50):
        attacks.client.post("/v1/datasets", files={"file": ("w.csv", table.encode())})
    with PeakRss(stack.api.pid) as memory:
        latencies, counts = measure(stack.url, seconds, interval, [attacks.list_datasets])
    print(attack_row(f"listing 50 {width}-column datasets", latencies, memory.grew,
                     _ran(counts)), flush=True)


def _npz(X, y) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=X, y=y)
    return buf.getvalue()


def measure(url: str, seconds: float, interval_s: float, actions: list) -> tuple[list, dict]:
    """Probe latencies while each action runs back to back in a thread; and how often each ran."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    prober = ctx.Process(target=probe, args=(url, interval_s, seconds, out))
    stop = threading.Event()
    counts = {action.__name__: 0 for action in actions}

    def loop(action) -> None:
        while not stop.is_set():
            action()
            counts[action.__name__] += 1

    threads = [threading.Thread(target=loop, args=(a,), daemon=True) for a in actions]
    prober.start()
    time.sleep(0.5)  # the probe process imports httpx first
    for thread in threads:
        thread.start()
    latencies = out.get(timeout=seconds + 600)
    stop.set()
    for thread in threads:
        thread.join(600)
    prober.join(60)
    return latencies, counts


def row(name: str, latencies: list, idle_p99: float | None, ran: str) -> str:
    ms = np.array(latencies) * 1000
    p50, p99, worst = np.percentile(ms, 50), np.percentile(ms, 99), ms.max()
    ratio = f"{p99 / idle_p99:8.1f}x" if idle_p99 else f"{'1.0x':>9}"
    verdict = "meets" if p99 < TARGET_P99_MS else "MISSES"
    return (f"{name:<34}{len(ms):>7}{p50:>8.1f}{p99:>9.1f}{worst:>9.1f}{ratio}  {verdict:<7}"
            f" {ran}")


def main() -> int:
    import isolation_predict  # bench/, beside this script: the rows of issue 22, items 5 and 7

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="probe window per scenario")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="probe schedule")
    parser.add_argument("--attacks-only", action="store_true",
                        help="only the rows of issue 22's attacks (exports, slowloris, uploads)")
    parser.add_argument("--dawdlers", type=int, default=3000,
                        help="slowloris connections (each a file descriptor here too)")
    parser.add_argument("--only", default="", metavar="NAME",
                        help="with --attacks-only: only the rows whose name holds NAME")
    parser.add_argument("--predict-bounds-only", action="store_true",
                        help="only the rows of issue 22, items 5 and 7 (after the idle row)")
    args = parser.parse_args()
    interval = args.interval_ms / 1000
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        env = {"BACKPROP_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
               "BACKPROP_MAX_BODY_BYTES": str(UPLOAD_BYTES + 4 * 2**20),
               "BACKPROP_ACCESS_LOG": "false"}
        stack = Stack(Settings(redis_url=None, data_dir=Path(tmp) / "data"), "127.0.0.1",
                      free_port(), workers=2, log_dir=Path(tmp) / "logs",
                      extra_env=env).start()
        try:
            if args.attacks_only:
                run_attacks(stack, args.seconds, interval, args.dawdlers, args.only)
                return 0
            heavy = Heavy(stack.url)
            print(f"/healthz latency while tenant `heavy` works the API; {os.cpu_count()} "
                  f"cores; probed every {args.interval_ms:g} ms for {args.seconds:g} s per "
                  f"row, timed from each probe's scheduled start", flush=True)
            print(f"{'scenario':<34}{'probes':>7}{'p50 ms':>8}{'p99 ms':>9}{'max ms':>9}"
                  f"{'p99/idle':>9}  {'p99<50ms':<8} heavy tenant's requests", flush=True)
            idle, _ = measure(stack.url, args.seconds, interval, [])
            idle_p99 = float(np.percentile(np.array(idle) * 1000, 99))
            print(row("idle", idle, None, "-"), flush=True)
            if args.predict_bounds_only:
                isolation_predict.predict_bound_rows(stack, heavy.client, args.seconds,
                                                     interval, idle_p99)
                return 0
            scenarios = [("100,000-row predict (.npy)", [heavy.predict]),
                         ("64 MiB upload (NPZ)", [heavy.upload_npz])]
            for name, actions in scenarios:
                latencies, counts = measure(stack.url, args.seconds, interval, actions)
                print(row(name, latencies, idle_p99, _ran(counts)), flush=True)
            jobs = heavy.queue_jobs()
            latencies, _ = measure(stack.url, args.seconds, interval, [])
            print(row("50 queued jobs (2 workers busy)", latencies, idle_p99, "50 jobs"),
                  flush=True)
            latencies, counts = measure(stack.url, args.seconds, interval,
                                        [heavy.predict, heavy.upload_npz])
            print(row("all three at once", latencies, idle_p99, _ran(counts)), flush=True)
            heavy.cancel(jobs)
            latencies, counts = measure(stack.url, args.seconds, interval, [heavy.upload_json])
            print(row(f"{len(heavy.json_body) / 2**20:.0f} MiB JSON upload", latencies, idle_p99,
                      _ran(counts)), flush=True)
            run_attacks(stack, args.seconds, interval, args.dawdlers)
            isolation_predict.predict_bound_rows(stack, heavy.client, args.seconds, interval,
                                                 idle_p99)
        finally:
            stack.stop()
    return 0


def _ran(counts: dict) -> str:
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())


if __name__ == "__main__":
    raise SystemExit(main())
