"""The client's commands as real subprocesses, for the CLI and table tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(module: str, argv: tuple[str, ...], url: str, env: dict) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGV` with BACKPROP_URL=url (no API key unless given in env)."""
    environ = {k: v for k, v in os.environ.items() if k != "BACKPROP_API_KEY"}
    environ.update({"BACKPROP_URL": url, **env})
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


def client_cli(*argv: str, url: str, **env: str) -> subprocess.CompletedProcess:
    """The client distribution's own command, `backprop-client ARGV`."""
    return run("backprop_client.cli", argv, url, env)


def backprop(*argv: str, url: str, **env: str) -> subprocess.CompletedProcess:
    """The server's `backprop ARGV`, which offers the same client commands."""
    return run("service.cli", argv, url, env)
