"""bench/engine.py end to end on a small data set: it runs, and its table and target lines hold
the figures the README quotes. Speeds are not judged here (only ratios from a full, interleaved
run mean anything; see the README's engine section)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "engine.py"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


def test_quick_run_prints_a_consistent_table_and_target_lines():
    """The figures must agree with each other (rates, shares of the roofline, ratios, the
    target lines and their verdicts); whether a target is met on a loaded machine is not
    judged here."""
    out = run_bench("--quick", "--rows", "1024", "--rounds", "1", "--configs", "relu-ce-b256")
    present = [name for name, module in (("engine", "threadpoolctl"), ("torch", "torch"),
                                         ("sklearn", "sklearn"))
               if importlib.util.find_spec(module) is not None]
    assert "engine" in present and "1024 rows per run" in out
    header = re.search(r"^config +(.*)$", out, re.M).group(1).split()
    k = len(present)
    assert header[:2 * k] == [w for n in present for w in (n, "/s")]
    assert header[2 * k:4 * k] == [w for n in present for w in (n, "%roof")]
    row = re.search(r"^relu-ce-b256 +(.*)$", out, re.M).group(1).split()
    rates = {n: number(v) for n, v in zip(present, row)}
    shares = {n: number(v) for n, v in zip(present, row[len(present):])}
    gflops, mflop = (float(v) for v in re.search(
        r"sgemm 2048\^3: ([\d.]+) GFLOP/s .*; ([\d.]+) MFLOP per sample", out).groups())
    roofline = number(re.search(r"roofline ([\d,]+) samples/s", out).group(1))
    assert roofline == pytest.approx(gflops * 1e3 / mflop, rel=0.01)
    assert mflop == pytest.approx(2 * (2 * (784 * 512 + 512 * 256 + 256 * 10)
                                       + 512 * 256 + 256 * 10) / 1e6, abs=0.01)
    for name in present:
        assert rates[name] > 0
        assert shares[name] == pytest.approx(100 * rates[name] / roofline, abs=0.51)
    targets = dict(re.findall(r"^  (.+?): ([\d.%]+) \(target >= [\d.%]+\) (?:met|MISSED)$",
                              out, re.M))
    verdicts = re.findall(r"^  .+?: ([\d.%]+) \(target >= ([\d.%]+)\) (met|MISSED)$", out,
                          re.M)
    assert verdicts and all((number(v) >= number(t)) == (word == "met")
                            for v, t, word in verdicts)
    if "torch" in present:
        ratio = number(row[2 * len(present)])                  # the table's engine/torch
        assert ratio == pytest.approx(rates["engine"] / rates["torch"], abs=0.006)
        assert number(targets["engine/torch, batch 256"]) == ratio
    share = number(targets["engine share of the GEMM roofline, batch 256"])
    assert share == pytest.approx(shares["engine"], abs=1)
    peak, data, limit, imported = (int(v) for v in re.search(
        r"peak RSS, relu-ce-b256 in a fresh process: (\d+) MB \(dataset (\d+) MB \+ 150 MB "
        r"= (\d+) MB; engine imported (\d+) MB\)", out).groups())
    assert data == round((1024 * 784 * 4 + 1024 * 8) / 1e6)
    assert limit == data + 150 and 0 < imported <= peak
    memory_line = re.search(r"peak memory <= dataset \+ 150 MB: (\d+) <= (\d+) MB (met|MISSED)",
                            out).groups()
    assert (int(memory_line[0]), int(memory_line[1])) == (peak, limit)
    assert (peak <= limit) == (memory_line[2] == "met")


def test_a_run_is_one_epoch_over_every_row_unless_told_otherwise():
    # More rows than any fixed default a shorter run might fall back to.
    out = run_bench("--rows", "25000", "--rounds", "1", "--configs", "relu-ce-b256",
                    "--contenders", "engine")
    assert "25000 x 784 float32" in out and "25000 rows per run" in out
    out = run_bench("--rows", "25000", "--run-rows", "3000", "--rounds", "1",
                    "--configs", "relu-ce-b256", "--contenders", "engine")
    assert "3000 rows per run" in out


def run_script(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_gpu_checks_run_without_a_gpu_in_a_dry_run():
    """bench/gpu_check.py and gpu_service.py with NumPy standing in for CuPy: the scripts a
    GPU machine runs stay runnable (their checks pass here: the GPU path on NumPy is the CPU's
    arithmetic, but the service runs for real)."""
    out = run_script("gpu_check.py", "--dry-run")
    assert out.count("  ok   ") >= 33 and "FAIL" not in out
    assert "gpu_check: all checks passed" in out
    out = run_script("gpu_service.py", "--dry-run")
    assert "gpu job trained: status succeeded on gpu" in out
    assert "labels equal" in out and "gpu_service: all checks passed" in out


def test_the_gpu_speed_table_runs_in_a_dry_run():
    pytest.importorskip("torch")                              # the table's peer
    out = run_script("gpu_speed.py", "--dry-run", "--rows", "1024", "--cpu-rows", "512",
                     "--rounds", "1", "--epochs", "2", "--batches", "256",
                     "--profile-rows", "512")
    row = re.search(r"^ +256 +([\d,]+) +([\d,]+) +([\d,]+) +([\d.]+) +([\d.]+)$", out, re.M)
    gpu, torch_rate, cpu, vs_torch, vs_cpu = (number(v) for v in row.groups())
    assert min(gpu, torch_rate, cpu) > 0
    assert vs_torch == pytest.approx(gpu / torch_rate, abs=0.006)
    assert vs_cpu == pytest.approx(gpu / cpu, abs=0.006)
    assert re.search(r"engine GPU / torch CUDA, batch 256: [\d.]+ \(target >= 0\.80\) "
                     r"(met|MISSED)", out)
