"""Fixtures that several service test modules use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from service.embedded_redis import free_port
from tests.service.browser_helpers import CHROMIUM, CHROMIUM_ARGS
from tests.service.fault_helpers import child_pids, kill


@pytest.fixture()
def up(tmp_path):
    """`backprop up --workers 2` as a user starts it (embedded Valkey under tmp_path), once its
    banner is printed; everything it started is killed after the test."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
    env["BACKPROP_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "up", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    banner = []
    deadline = time.monotonic() + 90
    while "Press Ctrl-C" not in "".join(banner):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(banner)
        banner.append(proc.stdout.readline())
    proc.banner, proc.port = "".join(banner), port
    yield proc
    if proc.poll() is None:
        children = child_pids(proc.pid)     # before the kill: then they belong to init
        os.killpg(proc.pid, signal.SIGKILL)
        for child in children:
            kill(child)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed: `pip install playwright`")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    problems = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.problems = problems
    yield opened
    context.close()
