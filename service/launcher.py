"""`backprop up`: embedded Valkey (unless BACKPROP_REDIS_URL is set), the API and N workers."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from core.settings import Settings
from service.embedded_redis import EmbeddedValkey


# A process that died is started again, but not more often than this (a crash loop).
REVIVE_EVERY_S = 5.0
log = logging.getLogger("backprop.up")


class Stack:
    """The processes of a local deployment, started in order and stopped in reverse."""

    def __init__(self, settings: Settings, host: str, port: int, workers: int,
                 api_workers: int = 1, log_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None):
        self.settings, self.host, self.port = settings, host, port
        self.n_workers, self.api_workers = workers, api_workers
        self.log_dir = log_dir
        self.valkey: EmbeddedValkey | None = None
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        # Children read their settings from this environment (BACKPROP_*).
        self.env = {**os.environ, **(extra_env or {})}
        # The workers share this host's cores: unless told otherwise, each gets its share of
        # BLAS threads (more would spin against each other whenever two jobs run at once).
        self.env.setdefault("BACKPROP_WORKER_BLAS_THREADS",
                            str(max(1, (os.cpu_count() or 1) // max(workers, 1))))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._spawned: dict[int, float] = {}  # pid -> when it started

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, ready_timeout_s: float = 60.0) -> "Stack":
        if not self.settings.redis_url:
            self.valkey = EmbeddedValkey(self.settings.data_dir / "valkey",
                                         maxmemory=self.settings.redis_maxmemory).start()
            self.env["BACKPROP_REDIS_URL"] = self.valkey.url
        for _ in range(self.n_workers):
            self.add_worker()
        self.start_api(ready_timeout_s)
        threading.Thread(target=self._supervise, name="backprop-supervisor", daemon=True).start()
        return self

    def start_api(self, ready_timeout_s: float = 60.0) -> "Stack":
        """Start the API process (again, after stop_api) and wait until it is ready."""
        self.api = self._spawn("api", self._api_argv())
        self.wait_ready(ready_timeout_s)
        return self

    def _api_argv(self) -> list[str]:
        return [sys.executable, "-m", "service.cli", "api", "--host", self.host, "--port",
                str(self.port), "--workers", str(self.api_workers)]

    def revive_api(self) -> subprocess.Popen | None:
        """Start the API again if it died (killed, out of memory, crashed): it has no reason to
        exit while the stack runs, and workers and Redis carry on meanwhile. Its process group
        goes first, so no orphaned uvicorn process of several (--api-workers) keeps the port."""
        with self._lock:
            dead = self.api
            if (dead is None or self._stopping.is_set() or dead.poll() is None
                    or time.monotonic() - self._spawned.get(dead.pid, 0.0) < REVIVE_EVERY_S):
                return None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(dead.pid, signal.SIGKILL)
            log.warning("the API process exited with status %s; starting it again",
                        dead.returncode)
            self.api = self._spawn("api", self._api_argv())
            return self.api

    def stop_api(self, timeout_s: float = 30.0) -> None:
        """Stop the API alone; workers keep training and Redis keeps every record."""
        if self.api is not None:
            self._terminate([self.api], timeout_s)
            self.api = None

    def add_worker(self) -> subprocess.Popen:
        with self._lock:
            proc = self._spawn(f"worker{len(self.workers) + 1}", [sys.executable, "-m", "worker"])
            self.workers.append(proc)
            return proc

    def revive_workers(self) -> list[subprocess.Popen]:
        """Replace workers that died (killed, out of memory, crashed), as a container restart
        policy would; one that exited 0 was stopped on purpose and stays stopped. The job a
        dead worker held is resumed from its checkpoint once its lease runs out. A worker that
        keeps dying is started again at most every REVIVE_EVERY_S seconds."""
        revived = []
        with self._lock:
            for i, proc in enumerate(self.workers):
                if self._stopping.is_set():
                    break
                recent = time.monotonic() - self._spawned.get(proc.pid, 0.0) < REVIVE_EVERY_S
                if proc.poll() not in (None, 0) and not recent:
                    self.workers[i] = self._spawn(f"worker{i + 1}",
                                                  [sys.executable, "-m", "worker"])
                    revived.append(self.workers[i])
        return revived

    def _supervise(self, interval_s: float = 1.0) -> None:
        while not self._stopping.wait(interval_s):
            self.revive_workers()
            self.revive_api()

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")
        # Own process group: Ctrl-C reaches only us, and we stop children in order. Not a
        # session of its own: on Linux each session is a scheduler autogroup, and autogroups
        # share the CPU as equals, so two busy workers took two thirds of a 2-core host from
        # the API whatever their niceness (bench/isolation.py, all at once: /healthz p99
        # 52-111 ms; in our session, with the workers at BACKPROP_WORKER_NICE, 22-37 ms).
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if out else None, process_group=0)
        self._spawned[proc.pid] = time.monotonic()
        return proc

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        reason = "no answer yet"
        while time.monotonic() < deadline:
            if self.api is not None and self.api.poll() is not None:
                raise RuntimeError(f"the API process exited with status {self.api.returncode}")
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=2)
                if answer.status_code == 200:
                    return
                reason = answer.json().get("reason", answer.text)
            except httpx.HTTPError as exc:
                reason = str(exc)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the service was not ready within {timeout_s:.0f} s: {reason}")

    @staticmethod
    def _terminate(group: list[subprocess.Popen], timeout_s: float) -> None:
        """SIGTERM all, wait, then SIGKILL what is left (with its process group)."""
        for proc in group:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in group:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Workers first (they checkpoint and requeue running jobs), then the API, then Valkey."""
        self._stopping.set()
        with self._lock:  # no worker is revived from here on
            pass
        for group in (self.workers, [self.api] if self.api else []):
            self._terminate(group, timeout_s)
        self.workers, self.api = [], None
        if self.valkey is not None:
            self.valkey.stop()
            self.valkey = None
