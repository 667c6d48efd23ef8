"""The suite's own plumbing: test modules share code through helpers and conftest modules only,
and parallel test processes (`./dev test` runs pytest-xdist) each get a Valkey of their own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def imported_test_modules(path: Path) -> list[str]:
    """Modules named test_* that one module imports (at the top or inside a function)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names
                                     if alias.name.startswith("test_")]
        else:
            continue
        found += [n for n in names if n.startswith("tests.")
                  and any(part.startswith("test_") for part in n.split(".")[1:])]
    return found


def test_no_test_module_imports_another():
    """A test module imported by another runs its module-level code twice and ties the two
    together; what they share belongs in a helpers module or a conftest.py."""
    modules = sorted(TESTS.rglob("*.py"))
    assert len(modules) > 50, "the test modules were not found"
    wrong = {str(m.relative_to(ROOT)): imported_test_modules(m) for m in modules}
    assert not {m: names for m, names in wrong.items() if names}


def test_the_check_sees_an_import_of_a_test_module(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from tests.service import helpers\nfrom tests.service import test_jobs\n"
                      "def f():\n    from tests.test_readme import section\n")
    assert sorted(imported_test_modules(module)) == ["tests.service.test_jobs",
                                                     "tests.test_readme"]


def run_on_two_xdist_processes(tmp_path: Path, dist: str, target: Path,
                               out: Path) -> subprocess.CompletedProcess:
    """pytest on `target` in 2 xdist processes with tests/conftest.py as a plugin, rooted in
    tmp_path; the tests write what they saw under `out` (PROBE_OUT)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-n", "2",
         "--dist", dist, "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--basetemp", str(tmp_path / "basetemp"), str(target)],
        cwd=ROOT, env={**os.environ, "PROBE_OUT": str(out)}, capture_output=True, text=True,
        timeout=240)


def test_parallel_test_processes_each_start_their_own_valkey(tmp_path):
    """Two xdist workers each run the same test (--dist each) with the session `valkey` fixture
    of tests/conftest.py: two servers on two ports, each with its data in its worker's own
    temporary folder."""
    pytest.importorskip("xdist")
    (tmp_path / "test_probe.py").write_text(
        "import os, pathlib\n"
        "def test_probe(valkey, redis_client):\n"
        "    redis_client.set('probe', os.environ['PYTEST_XDIST_WORKER'])\n"
        "    out = pathlib.Path(os.environ['PROBE_OUT'])\n"
        "    line = f\"{os.environ['PYTEST_XDIST_WORKER']} {valkey.url} {valkey.data_dir}\\n\"\n"
        "    with open(out / os.environ['PYTEST_XDIST_WORKER'], 'w') as f:\n"
        "        f.write(line)\n"
        "    assert redis_client.get('probe').decode() == os.environ['PYTEST_XDIST_WORKER']\n")
    out = tmp_path / "out"
    out.mkdir()
    done = run_on_two_xdist_processes(tmp_path, "each", tmp_path / "test_probe.py", out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [p.read_text().split() for p in sorted(out.iterdir())]
    assert [worker for worker, _, _ in lines] == ["gw0", "gw1"], lines
    assert len({url for _, url, _ in lines}) == 2, lines
    assert all(f"/popen-{worker}/" in data for worker, _, data in lines), lines


def test_the_tests_of_a_module_with_a_module_fixture_run_in_one_process_in_order(tmp_path):
    """`./dev test`'s --dist loadgroup with tests/conftest.py's groups: a module's tests that
    share a module-scoped fixture (a stack of their own, say) run in one xdist process, in the
    module's order, so the fixture is made once and a test may rely on the one before it.
    (Grouping failed silently twice: the groups were marked after xdist had read them, and
    pytest 9.2 no longer lets xdist rename a test to carry its group, pytest-xdist#1386.)"""
    pytest.importorskip("xdist")
    for module in ("shared", "plain"):
        fixture = "scope='module'" if module == "shared" else ""
        (tmp_path / f"test_{module}.py").write_text(
            "import os, pathlib, pytest\n"
            f"@pytest.fixture({fixture})\n"
            "def thing():\n"
            "    return object()\n"
            + "".join(
                f"def test_{i}(thing):\n"
                f"    with open(pathlib.Path(os.environ['PROBE_OUT']) / '{module}', 'a') as f:\n"
                f"        f.write(f\"{i} {{os.environ['PYTEST_XDIST_WORKER']}} {{id(thing)}}\\n\")\n"
                for i in range(6)))
    out = tmp_path / "out"
    out.mkdir()
    done = run_on_two_xdist_processes(tmp_path, "loadgroup", tmp_path, out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shared = [line.split() for line in (out / "shared").read_text().splitlines()]
    assert [int(i) for i, _, _ in shared] == list(range(6)), shared
    assert len({worker for _, worker, _ in shared}) == 1, shared
    assert len({thing for _, _, thing in shared}) == 1, shared
    assert len((out / "plain").read_text().splitlines()) == 6
