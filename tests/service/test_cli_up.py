"""`backprop up` as a user runs it: embedded Valkey, API and workers; a killed API is started
again while workers and Valkey run on; Ctrl-C stops them all, promptly."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from service.embedded_redis import EmbeddedValkey, free_port
from tests.service.fault_helpers import (STOP_DEADLINE_S, child_pids, children_by_role, ctrl_c,
                                         wait_until)


def test_up_starts_everything_prints_urls_and_stops_cleanly_on_ctrl_c(up, tmp_path):
    assert f"http://127.0.0.1:{up.port}" in up.banner and "/docs" in up.banner
    assert "embedded Valkey" in up.banner
    ready = httpx.get(f"http://127.0.0.1:{up.port}/readyz", timeout=10).json()
    assert ready["workers"] == 2
    assert (tmp_path / "data" / "valkey").is_dir()
    for _ in range(3):
        assert httpx.get(f"http://127.0.0.1:{up.port}/v1/jobs", timeout=10).status_code == 200
    out, seconds = ctrl_c(up)
    assert up.returncode == 0, out
    assert "stopping" in out
    # The terminal gets no line per request (BACKPROP_ACCESS_LOG=true asks for them).
    assert '"route"' not in out and "/v1/jobs" not in out, out
    assert seconds < STOP_DEADLINE_S, f"Ctrl-C took {seconds:.1f} s\n{out}"
    appendonly = list((tmp_path / "data" / "valkey").rglob("*.aof"))
    assert appendonly, "the embedded Valkey keeps an append-only file"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{up.port}/healthz", timeout=2)


def test_up_keeps_its_children_in_its_session_and_runs_workers_after_the_api(up):
    """Each child leads its own process group (Ctrl-C reaches `backprop up` alone) but stays in
    its session: a session of its own would be a scheduler autogroup of its own on Linux,
    where niceness cannot order the API before the workers. Workers run at
    BACKPROP_WORKER_NICE (10), the API at the launcher's niceness."""
    roles = children_by_role(up.pid)
    assert {"api1", "worker1", "worker2"} <= set(roles), roles
    for role in ("api1", "worker1", "worker2"):
        pid = roles[role]
        assert os.getpgid(pid) == pid, role
        assert os.getsid(pid) == os.getsid(up.pid), role
    launcher = os.getpriority(os.PRIO_PROCESS, up.pid)
    assert os.getpriority(os.PRIO_PROCESS, roles["api1"]) == launcher
    for role in ("worker1", "worker2"):
        assert os.getpriority(os.PRIO_PROCESS, roles[role]) == max(launcher, 10), role
    out, _ = ctrl_c(up)
    assert up.returncode == 0, out


def worker_states(client: redis.Redis) -> list[bytes]:
    """The `state` of each worker registered in RQ."""
    return [client.hget(key, "state") for key in client.smembers("rq:workers")]


def test_an_idle_worker_stops_at_once_on_sigterm(tmp_path):
    """SIGTERM while RQ's command-channel thread waits out a read: the worker exits at once
    (it waited up to 60 s for that read before)."""
    with EmbeddedValkey(tmp_path / "valkey") as valkey:
        env = {**os.environ, "BACKPROP_REDIS_URL": valkey.url}
        client = redis.Redis.from_url(valkey.url)
        for attempt in range(3):
            proc = subprocess.Popen([sys.executable, "-m", "worker"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                # "idle" is set in RQ's work loop once its SIGTERM handler is installed. A
                # SIGTERM before then (registered but still starting: seconds under load) is
                # lost today, as worker/process.py's interim handler only sets an event that the
                # work loop never reads; that is another bug than this test's 60 s read.
                wait_until(lambda: worker_states(client) == [b"idle"], 120,
                           "the worker registered and idle in its work loop")
                # Not a wait: each attempt lands at another point of the command channel's read.
                time.sleep(0.2 * attempt)
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(STOP_DEADLINE_S) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            client.flushall()


def processes_with_env(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (what `backprop up` passes its children)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker.encode() in environ.read_bytes():
                status = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()
                if status[0] != "Z":
                    found.append(int(environ.parent.name))
    return found


def test_ctrl_c_while_up_is_starting_stops_what_it_started(tmp_path):
    """Ctrl-C before the banner (Valkey or the API still starting): `backprop up` still stops
    everything it started (before: KeyboardInterrupt left the children running)."""
    data = tmp_path / "data-ctrl-c-early"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
    env["BACKPROP_DATA_DIR"] = str(data)
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "up", "--port",
                             str(free_port()), "--workers", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_until(lambda: child_pids(proc.pid), 60, "a child of `backprop up`")
        out, _ = ctrl_c(proc)
        assert proc.returncode == 0, out
        assert "stopping" in out, out
        assert processes_with_env(str(data)) == [], out
    finally:
        for pid in processes_with_env(str(data)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
