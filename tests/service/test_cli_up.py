"""`backprop up` as a user runs it: embedded Valkey, API and a worker; Ctrl-C stops them all."""

import os
import signal
import subprocess
import sys
import time

import httpx

from service.embedded_redis import free_port


def test_up_starts_everything_prints_urls_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
    env["BACKPROP_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "up", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        banner = []
        deadline = time.monotonic() + 90
        while "Press Ctrl-C" not in "".join(banner):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(banner)
            banner.append(proc.stdout.readline())
        text = "".join(banner)
        assert f"http://127.0.0.1:{port}" in text and "/docs" in text and "embedded Valkey" in text
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()
        assert ready["workers"] == 2
        assert (tmp_path / "data" / "valkey").is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopping" in out
    appendonly = list((tmp_path / "data" / "valkey").rglob("*.aof"))
    assert appendonly, "the embedded Valkey keeps an append-only file"
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        raise AssertionError("the API still answers after Ctrl-C")
    except httpx.TransportError:
        pass
