"""Plumbing for the fault tests: a private Valkey and Stack per test (they kill things), process
lookup for work horses and `backprop up`'s children, and polling with deadlines. Everything is
real: processes, signals, HTTP."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import httpx

from core.settings import Settings
from service.embedded_redis import EmbeddedValkey, free_port
from service.launcher import Stack
from tests.service import helpers
from tests.service.helpers import FINISHED

T = TypeVar("T")

# Short lease and frequent checkpoints, so a lost worker is noticed in about two seconds.
FAST_ENV = {
    "BACKPROP_LEASE_S": "2",
    "BACKPROP_HEARTBEAT_S": "0.25",
    "BACKPROP_CHECKPOINT_EVERY_S": "0.2",
    "BACKPROP_MAX_RESTARTS": "3",
    "BACKPROP_API_KEYS": "",
}


@dataclass
class FaultStack:
    """A private deployment: its Valkey (restartable), its Stack, a client and the log folder."""

    valkey: EmbeddedValkey
    stack: Stack
    api: httpx.Client
    logs: Path

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.logs.glob("*.log")))


@contextlib.contextmanager
def fault_stack(tmp_path: Path, workers: int = 2, **env: str) -> Iterator[FaultStack]:
    """Valkey in tmp_path, the API on a free port and `workers` worker processes."""
    valkey = EmbeddedValkey(tmp_path / "valkey").start()
    logs = tmp_path / "logs"
    stack = Stack(Settings(redis_url=valkey.url), "127.0.0.1", free_port(), workers,
                  log_dir=logs, extra_env={**FAST_ENV, "BACKPROP_REDIS_URL": valkey.url, **env})
    try:
        stack.start(ready_timeout_s=helpers.START_DEADLINE_S)
        with httpx.Client(base_url=stack.url, timeout=30) as api:
            yield FaultStack(valkey, stack, api, logs)
    finally:
        stack.stop(timeout_s=10)
        valkey.stop()


def wait_until(check: Callable[[], T], timeout_s: float, what: str,
               context: Callable[[], str] = lambda: "") -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}\n{context()}")
        time.sleep(0.05)


# -- processes ---------------------------------------------------------------------------------
def child_pids(pid: int) -> list[int]:
    """Live child processes of `pid` (an RQ worker's child is its work horse)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                children.append(int(stat.parent.name))
    return children


def busy_worker(fs: FaultStack) -> tuple[int, int]:
    """(worker pid, horse pid) of the one worker that is running a job now."""
    def find():
        busy = [(p.pid, kids[0]) for p in fs.stack.workers
                if p.poll() is None and (kids := child_pids(p.pid))]
        return busy[0] if len(busy) == 1 else None
    return wait_until(find, 10, "exactly one worker with a work horse", fs.log_text)


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# -- `backprop up` (the `up` fixture is in conftest.py) ----------------------------------------
# Stopping takes well under a second per process; RQ's pubsub thread could hold a worker's exit
# for its 60 s read (worker/process.py PUBSUB_POLL_S), which made Ctrl-C take over a minute.
STOP_DEADLINE_S = 20


def children_by_role(pid: int) -> dict[str, int]:
    """The pids of `backprop up`'s API, workers and Valkey, from their command lines."""
    roles = {}
    for child in child_pids(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        role = ("api" if "service.cli api" in text else "worker" if "-m worker" in text
                else "valkey" if "valkey" in text else "other")
        roles[f"{role}{len([r for r in roles if r.startswith(role)]) + 1}"] = child
    return roles


def ctrl_c(proc) -> tuple[str, float]:
    start = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    out, _ = proc.communicate(timeout=90)
    return out, time.monotonic() - start


# -- jobs over HTTP ----------------------------------------------------------------------------
# Eight features: with batch_size 8 on 1200 rows an epoch of `submit`'s network takes ~30 ms.
blobs = functools.partial(helpers.blobs, features=8)
upload = helpers.upload_npz


def submit(api: httpx.Client, dataset_id: str, epochs: int, batch_size: int = 8,
           **fields) -> dict:
    """A small tanh classifier; with batch_size 8 on 1200 rows an epoch takes some 30 ms."""
    body = {"dataset_id": dataset_id,
            "network": {"layers": [{"units": 32, "activation": "tanh"},
                                   {"units": 3, "activation": "softmax"}],
                        "loss": "cross_entropy"},
            "training": {"optimizer": "sgd", "learning_rate": 0.01, "epochs": epochs,
                         "batch_size": batch_size, "seed": 3},
            **fields}
    answer = api.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()


def keyed_client(fs: FaultStack, key: str) -> httpx.Client:
    """A client of the stack that sends API key `key` (a tenant's)."""
    return httpx.Client(base_url=fs.stack.url, timeout=30,
                        headers={"Authorization": f"Bearer {key}"})


def api_keys(keys: dict[str, str]) -> str:
    """BACKPROP_API_KEYS for tenant -> key."""
    return ",".join(f"{tenant}:{key}" for tenant, key in keys.items())


def job(api: httpx.Client, job_id: str) -> dict:
    answer = api.get(f"/v1/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_job(fs: FaultStack, job_id: str, timeout_s: float = 60,
             until: Callable[[dict], bool] = lambda j: j["status"] in FINISHED) -> dict:
    def check():
        current = job(fs.api, job_id)
        return current if until(current) else None
    return wait_until(check, timeout_s, f"job {job_id} to reach the expected state",
                      lambda: f"job: {job(fs.api, job_id)}\n{fs.log_text()}")


def epochs(api: httpx.Client, job_id: str) -> list[dict]:
    answer = api.get(f"/v1/jobs/{job_id}/history")
    assert answer.status_code == 200, answer.text
    return answer.json()["epochs"]


def assert_contiguous(history: list[dict], n: int) -> None:
    numbers = [e["epoch"] for e in history]
    assert numbers == list(range(1, n + 1)), f"history epochs are not 1..{n}: {numbers}"


def log_lines(fs: FaultStack, text: str) -> list[str]:
    return [line for p in sorted(fs.logs.glob("worker*.log"))
            for line in p.read_text(errors="replace").splitlines() if text in line]
