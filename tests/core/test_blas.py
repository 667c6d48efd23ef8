"""NumPy's BLAS per process: the API's and each worker's share of the host's cores, and no
BLAS choice made behind the user's back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from core.settings import Settings
from service.launcher import Stack

PROBE = ("import json, numpy; from core.blas_threads import limit_blas_threads; {call}; "
         "from threadpoolctl import threadpool_info; "
         "print(json.dumps([p['num_threads'] for p in threadpool_info() "
         "if p['user_api'] == 'blas']))")


def blas_threads(call: str) -> list[int]:
    """BLAS thread counts in a fresh process (no OPENBLAS_NUM_THREADS) after `call`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(call=call)], capture_output=True,
                         text=True, check=True, timeout=60, env=env)
    return json.loads(out.stdout)


def test_limit_blas_threads_caps_every_blas_library_and_zero_leaves_the_default():
    capped = blas_threads("limit_blas_threads(1)")
    assert capped and set(capped) == {1}
    assert blas_threads("limit_blas_threads(0)") == blas_threads("pass")


def test_the_stack_gives_each_worker_its_share_of_the_cores_unless_told(monkeypatch):
    monkeypatch.delenv("BACKPROP_WORKER_BLAS_THREADS", raising=False)
    cores = os.cpu_count() or 1
    two = Stack(Settings(), "127.0.0.1", 1, workers=2)
    assert two.env["BACKPROP_WORKER_BLAS_THREADS"] == str(max(1, cores // 2))
    many = Stack(Settings(), "127.0.0.1", 1, workers=4 * cores)
    assert many.env["BACKPROP_WORKER_BLAS_THREADS"] == "1"
    told = Stack(Settings(), "127.0.0.1", 1, workers=2,
                 extra_env={"BACKPROP_WORKER_BLAS_THREADS": "3"})
    assert told.env["BACKPROP_WORKER_BLAS_THREADS"] == "3"


ENV_PROBE = ("import json, os; before = dict(os.environ); "
             "import service, service.app, service.cli, worker.process, engine; "
             "changed = {k for k in set(before) | set(os.environ) "
             "if before.get(k) != os.environ.get(k)}; "
             "print(json.dumps(sorted(changed)))")


def test_importing_the_service_changes_no_environment_variable():
    """BLAS kernels are the deployment's choice (README, Performance knobs): importing the
    server's packages sets nothing (it once set OPENBLAS_CORETYPE on one CPU family, before
    NumPy loaded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS")}
    out = subprocess.run([sys.executable, "-c", ENV_PROBE], capture_output=True, text=True,
                         check=True, timeout=60, env=env)
    assert json.loads(out.stdout) == []
