"""bench/isolation.py's rows for issue 22, items 5 and 7: predict bodies that cost far more than
their size (bounded by rows x the model's columns before they are decoded), and one tenant's
slow predicts beside another tenant's uploads (decoder slots shared fairly). Each row prints
/healthz p50/p99 and the API's memory growth (VmHWM over VmRSS before, /proc), against
targets of p99 < 50 ms and growth < 200 MB. Run through bench/isolation.py
(--predict-bounds-only for these rows alone)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np

from isolation import KEYS, TARGET_GROWTH_MB, _ran, measure, row  # noqa: E402

WIDE = 2000


def _csv_model(client: httpx.Client, table: str) -> str:
    dataset = client.post("/v1/datasets", files={"file": ("t.csv", table.encode())},
                          data={"target": "label"})
    assert dataset.status_code == 201, dataset.text[:300]
    job = client.post("/v1/jobs", json={"dataset_id": dataset.json()["id"], "training": {
        "epochs": 1}, "network": {"layers": [{"units": 2, "activation": "softmax"}],
                                  "loss": "cross_entropy"}}).json()
    while (done := client.get(f"/v1/jobs/{job['id']}").json())["status"] in ("queued",
                                                                             "running"):
        time.sleep(0.1)
    assert done["status"] == "succeeded", done
    return done["model_id"]


def _binary_infer(client: httpx.Client, model_id: str, name: str, datatype: str, count: int,
                  blob: bytes) -> int:
    header = httpx.Request("POST", "/", json={"inputs": [{
        "name": name, "datatype": datatype, "shape": [count],
        "parameters": {"binary_data_size": len(blob)}}]}).content
    return client.post(f"/v2/models/{model_id}/infer", content=header + blob, headers={
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header))}).status_code


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def predict_bound_rows(stack, client: httpx.Client, seconds: float, interval: float,
                       idle_p99: float) -> None:
    """Rows for items 5 and 7 of issue 22, each with the API's growth in memory."""
    rng = np.random.default_rng(1)
    wide = _csv_model(client, ",".join(f"c{i}" for i in range(WIDE)) + ",label\n" + "".join(
        ",".join(map(str, rng.integers(0, 9, WIDE))) + f",{i % 2}\n" for i in range(20)))
    texts = _csv_model(client, "x,colour,label\n" + "".join(
        f"{i % 7},{'red' if i % 3 else 'blue'},{i % 2}\n" for i in range(40)))
    csv_body = b"c0\n" + b"1\n" * 99_999                              # 195 KiB
    statuses: dict[str, set] = {}

    def csv_predict() -> None:
        statuses.setdefault("csv", set()).add(client.post(
            f"/v1/models/{wide}/predict", content=csv_body,
            headers={"Content-Type": "text/csv"}).status_code)

    def uint8_tensor() -> None:
        statuses.setdefault("uint8", set()).add(
            _binary_infer(client, texts, "x", "UINT8", 28 * 2**20, bytes(28 * 2**20)))

    def bytes_tensor() -> None:
        count = 30 * 2**20 // 6
        statuses.setdefault("bytes", set()).add(_binary_infer(
            client, texts, "colour", "BYTES", count, ((2).to_bytes(4, "little") + b"ab") * count))

    pid = stack.api.pid
    for name, action in (("195 KiB CSV x 2,000 columns", csv_predict),
                         ("28 MiB UINT8 column tensor", uint8_tensor),
                         ("30 MiB BYTES tensor", bytes_tensor)):
        before = _status_mb(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        latencies, counts = measure(stack.url, seconds, interval, [action])
        grew = _status_mb(pid, "VmHWM") - before
        print(row(name, latencies, idle_p99, _ran(counts)) + _growth(grew) +
              f", answered {sorted(set().union(*statuses.values()))}", flush=True)
        statuses.clear()

    records = b'{"inputs": [' + b",".join([b'{"c1": 0.5}'] * 2200) + b"]}"    # 24 kB
    table = ("a,b,label\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(50))).encode()
    uploads: list[float] = []
    other = httpx.Client(base_url=stack.url, timeout=300,
                         headers={"Authorization": f"Bearer {KEYS['probe']}"})

    def slow_records() -> None:
        assert client.post(f"/v1/models/{wide}/predict", content=records, headers={
            "Content-Type": "application/json"}).status_code == 200

    def other_upload() -> None:
        start = time.perf_counter()
        answer = other.post("/v1/datasets", files={"file": ("b.csv", table)},
                            data={"target": "label"})
        uploads.append(time.perf_counter() - start)
        assert answer.status_code == 201, answer.text[:300]
        other.delete(f"/v1/datasets/{answer.json()['id']}")

    def records_predict() -> None:      # named for the row's counts
        slow_records()

    before = _status_mb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    latencies, counts = measure(stack.url, seconds, interval,
                                [slow_records, records_predict, other_upload])
    grew = _status_mb(pid, "VmHWM") - before
    waits = np.array(uploads) * 1000
    print(row("slow records x2 + other's uploads", latencies, idle_p99, _ran(counts)) +
          _growth(grew) + f"; other tenant's 50-row upload p50 {np.percentile(waits, 50):.0f}"
          f" ms, p99 {np.percentile(waits, 99):.0f} ms", flush=True)
    other.close()


def _growth(mb: float) -> str:
    verdict = "meets" if mb < TARGET_GROWTH_MB else "MISSES"
    return f"; API grew {mb:.0f} MB ({verdict} < {TARGET_GROWTH_MB:.0f} MB)"


