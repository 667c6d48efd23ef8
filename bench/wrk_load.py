"""wrk (Debian package `wrk`) as bench/service.py's load generator: POST one body, over and over.

wrk is C with one event loop per thread, so on the bench's 2-core machine it costs far less CPU
per request than the server it drives; `cpu` in each result is wrk's own CPU seconds per
second of wall time (1.0 = its one thread saturated), printed so the reader can check.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

LUA = r"""
wrk.method = "POST"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE")
local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then wrk.headers["Accept"] = accept end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "bytes": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), summary.bytes))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, body: bytes, content_type: str, seconds: float, connections: int,
        accept: str = "") -> dict:
    """requests/s, p50/p99 latency (ms), wrk's CPU use; raises if any request failed."""
    with tempfile.TemporaryDirectory() as tmp:
        script, body_file = Path(tmp, "post.lua"), Path(tmp, "body")
        script.write_text(LUA)
        body_file.write_bytes(body)
        env = {"BENCH_BODY": str(body_file), "BENCH_CTYPE": content_type,
               "BENCH_ACCEPT": accept, "PATH": "/usr/bin:/bin"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(round(seconds), 1)}s",
                               "--timeout", "30s", "-s", str(script), url],
                              env=env, capture_output=True, text=True, timeout=seconds + 60)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    stats = json.loads(line[len("BENCH "):])
    if stats["errors"] or stats["non2xx"] or not stats["requests"]:
        raise RuntimeError(f"wrk saw failures against {url}: {stats}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"rps": stats["requests"] / (stats["duration_us"] / 1e6),
            "p50_ms": stats["p50_us"] / 1000, "p99_ms": stats["p99_us"] / 1000,
            "requests": stats["requests"], "cpu": cpu / wall}
