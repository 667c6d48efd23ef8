"""NumPy's BLAS per process: OpenBLAS's kernels on Zen 4, and the API's and each worker's share
of the host's cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from service.launcher import Stack
from worker.blas import fast_openblas_kernel, this_cpus_openblas_kernel
from worker.settings import Settings

PROBE = ("import json, numpy; from worker.blas import limit_blas_threads; {call}; "
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


def cpuinfo(vendor: str, family: int, flags: str) -> str:
    cpu = (f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
           f"model\t\t: 17\nflags\t\t: fpu sse2 {flags}\n")
    return cpu.format(n=0) + "\n" + cpu.format(n=1)


@pytest.mark.parametrize("vendor,family,flags,kernel", [
    ("AuthenticAMD", 25, "avx2 fma avx512f avx512bw", "Zen"),     # Zen 4
    ("AuthenticAMD", 25, "avx2 fma", None),                      # Zen 3: OpenBLAS picks Zen
    ("AuthenticAMD", 26, "avx2 fma avx512f avx512bw", None),     # Zen 5: full-width AVX-512
    ("GenuineIntel", 6, "avx2 fma avx512f avx512bw", None),
])
def test_the_zen_kernels_are_asked_for_on_zen4_only(vendor, family, flags, kernel):
    assert fast_openblas_kernel(cpuinfo(vendor, family, flags)) == kernel
    assert fast_openblas_kernel("") is None


KERNEL_PROBE = ("import json, os, sys; {first}; import numpy; "
                "from threadpoolctl import threadpool_info; "
                "print(json.dumps([os.environ.get('OPENBLAS_CORETYPE'), "
                "[p.get('architecture') for p in threadpool_info() if p['user_api'] == 'blas']]))")


def kernel_in_fresh_process(first: str, **env: str) -> tuple[str | None, list[str]]:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", KERNEL_PROBE.format(first=first)],
                         capture_output=True, text=True, check=True, timeout=60,
                         env={**clean, **env})
    return tuple(json.loads(out.stdout))


def test_importing_the_service_picks_the_kernel_before_numpy_loads_and_a_users_choice_stands():
    kernel = this_cpus_openblas_kernel()
    var, architectures = kernel_in_fresh_process("import service")
    assert var == kernel
    default = kernel_in_fresh_process("pass")[1]
    # OpenBLAS names its Zen kernel set after the Haswell kernels it reuses.
    assert architectures == (["Haswell"] if kernel == "Zen" else default)
    chosen = kernel_in_fresh_process("import service", OPENBLAS_CORETYPE="SkylakeX")
    assert chosen[0] == "SkylakeX"
    if kernel == "Zen":  # an AVX-512 CPU, so OpenBLAS can load the kernels the user asked for
        assert chosen[1] == ["SkylakeX"]
    assert kernel_in_fresh_process("import numpy, service")[0] is None   # too late: untouched
