"""The processes bench/service.py drives and watches: the bare app, and CPU and memory from /proc."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


class BareApp:
    """bench/bare_app.py in its own process group, serving the payloads written to `folder`."""

    def __init__(self, folder: Path, port: int, workers: int):
        self.folder, self.port, self.workers = folder, port, workers
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "BENCH_BARE_PAYLOADS": str(self.folder)}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("bare_app.py")), "--port",
             str(self.port), "--workers", str(self.workers)], env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the bare app did not start within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)



def server_pids(proc: subprocess.Popen, workers: int) -> list[int]:
    """The processes serving HTTP: uvicorn's own when it runs 1 worker, else its children."""
    if workers == 1:
        return [proc.pid]
    kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [int(k) for k in kids
            if b"resource_tracker" not in Path(f"/proc/{k}/cmdline").read_bytes()]


def api_pids(stack) -> list[int]:
    return server_pids(stack.api, stack.api_workers)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes and of their reaped children (RQ's work horses)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)
