"""bench/engine.py end to end on a small data set: it runs, and its table and target lines hold
the figures the README quotes. Speeds are not judged here (only ratios from a full, interleaved
run mean anything; see the README's engine section)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "engine.py"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quick_run_prints_every_contenders_rate_ratio_and_targets():
    out = run_bench("--quick", "--rows", "1024", "--rounds", "1", "--configs", "relu-ce-b256")
    present = [name for name, module in (("engine", "threadpoolctl"), ("torch", "torch"),
                                         ("sklearn", "sklearn"))
               if importlib.util.find_spec(module) is not None]
    assert "1024 rows per run" in out
    row = re.search(r"^relu-ce-b256 +(.*)$", out, re.M).group(1).split()
    rates = [float(v.replace(",", "")) for v in row[:len(present)]]
    assert all(rate > 0 for rate in rates), out
    assert re.search(r"roofline [\d,]+ samples/s", out)
    if "torch" in present:
        assert re.search(r"engine/torch, batch 256: \d+\.\d\d \(target >= 1\.10\) (met|MISSED)",
                         out)
    assert re.search(r"engine share of the GEMM roofline, batch 256: \d+% \(target >= 85%\)", out)
    assert re.search(r"peak memory <= dataset \+ 150 MB: \d+ <= \d+ MB (met|MISSED)", out)


def test_a_run_is_one_epoch_over_every_row_unless_told_otherwise():
    # More rows than any fixed default a shorter run might fall back to.
    out = run_bench("--rows", "25000", "--rounds", "1", "--configs", "relu-ce-b256",
                    "--contenders", "engine")
    assert "25000 x 784 float32" in out and "25000 rows per run" in out
    out = run_bench("--rows", "25000", "--run-rows", "3000", "--rounds", "1",
                    "--configs", "relu-ce-b256", "--contenders", "engine")
    assert "3000 rows per run" in out
