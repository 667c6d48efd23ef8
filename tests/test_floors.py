"""The four floors: engine/ -> core/ -> service/ and worker/ (peers) -> nothing above; client/
imports nothing of the server. Read from the source with ast, so a lazy import inside a function
counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_PACKAGES = {"engine", "core", "service", "worker"}
# What each package may import of the server's packages (itself included).
ALLOWED = {
    "engine": {"engine"},
    "core": {"engine", "core"},
    "service": {"engine", "core", "service"},
    "worker": {"engine", "core", "worker"},
    "client": set(),
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in one module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_floor_imports_only_the_floors_below(package):
    folder = ROOT / package / "backprop_client" if package == "client" else ROOT / package
    modules = sorted(folder.rglob("*.py"))
    assert modules, f"no modules found under {folder}"
    wrong = {str(m.relative_to(ROOT)): sorted(imported_packages(m) & SERVER_PACKAGES
                                              - ALLOWED[package])
             for m in modules}
    assert not {m: names for m, names in wrong.items() if names}


def test_the_check_sees_a_forbidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from worker.process import main\n    import service.app\n")
    assert imported_packages(module) & SERVER_PACKAGES == {"worker", "service"}
