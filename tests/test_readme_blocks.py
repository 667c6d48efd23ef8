"""Every bash and python block of the README runs as written, in the README's order, against a
live service: bash blocks share their variables and functions (each block's state is handed to
the next, as in one terminal), python blocks share one namespace (as in one session), and all
run in one folder that holds the repository's `docs/` and `.venv/`, where the README's commands
are run from. A block that cannot run here says why in a comment just above it:
`<!-- not run by tests/test_readme_blocks.py: REASON -->`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOT_RUN = "<!-- not run by tests/test_readme_blocks.py:"
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)
ASSIGNED = re.compile(r"^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=", re.M)


def readme_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, code, line) of every block to run, in order."""
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if not before.startswith(NOT_RUN):
            blocks.append((match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1))
    return blocks


def run_bash(code: str, folder: Path, state: Path, env: dict) -> subprocess.CompletedProcess:
    names = " ".join(sorted(set(ASSIGNED.findall(code))))
    script = (f"set -euo pipefail\n[ -f {state} ] && source {state}\n{code}\n"
              f"{{ declare -p {names} 2>/dev/null || true; declare -f; }} >> {state}\n"
              if names else f"set -euo pipefail\n[ -f {state} ] && source {state}\n{code}\n"
              f"declare -f >> {state}\n")
    return subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_check_finds_blocks_and_honours_the_marker():
    text = ("```bash\necho a\n```\n" + NOT_RUN + " needs Docker -->\n```bash\ndocker ps\n```\n"
            "```python\nprint(1)\n```\n```console\n$ x\n```\n")
    assert [(lang, code) for lang, code, _ in readme_blocks(text)] == [
        ("bash", "echo a\n"), ("python", "print(1)\n")]


def test_every_readme_block_runs_as_written(stack, tmp_path, monkeypatch):
    blocks = readme_blocks(README.read_text())
    assert len(blocks) >= 10, "the README's examples are gone?"
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    state = tmp_path / ".readme-state.sh"
    env = {**os.environ, "API": stack.url, "BACKPROP_URL": stack.url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BACKPROP_API_KEY", None)
    monkeypatch.chdir(tmp_path)
    for name in ("API", "BACKPROP_URL", "PATH"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("BACKPROP_API_KEY", raising=False)
    namespace: dict = {"__name__": "__readme__"}
    for language, code, line in blocks:
        if language == "bash":
            done = run_bash(code, tmp_path, state, env)
            assert done.returncode == 0, (f"README.md line {line}: the bash block failed\n"
                                          f"{done.stderr[-3000:]}\n{done.stdout[-2000:]}")
            # Variables a later python block reads (MODEL, ...) reach it as in a shell export.
            for name in set(ASSIGNED.findall(code)):
                shown = subprocess.run(["bash", "-c", f"source {state}; printf %s \"${{{name}-}}\""],
                                       capture_output=True, text=True).stdout
                if shown:
                    monkeypatch.setenv(name, shown)
        else:
            try:
                exec(compile(code, f"README.md:{line}", "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"README.md line {line}: the python block raised {exc!r}")
