"""The deployment test's fixtures: an engine, base images, a copy of the tree with a wheelhouse,
and the stack brought up by the README's own deploy steps. Slow (minutes), so `./dev test`
leaves it out; `./dev deploy-test` (and .ci/run) runs it. Without a Docker engine it skips,
saying why. Each step's time is printed at the end of the run."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.embedded_redis import free_port
from tests.deploy.harness import (ROOT, STEP_SECONDS, BaseImages, Engine, EngineUnavailable,
                                  Project, base_images, clean_env, readme_block, run,
                                  start_engine, timed)

PROJECT = "backprop-deploytest"


def pytest_terminal_summary(terminalreporter) -> None:
    if STEP_SECONDS:
        terminalreporter.write_sep("-", "deployment steps, seconds")
        for step, seconds in STEP_SECONDS.items():
            terminalreporter.write_line(f"{step:<52} {seconds:7.1f}")


@pytest.fixture(scope="session")
def engine() -> Engine:
    try:
        with timed("engine start"):
            running = start_engine()
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def images(engine) -> BaseImages:
    with timed("base images (pulled or stand-ins)"):
        found = base_images(engine)
    return found


@pytest.fixture(scope="session")
def tree(tmp_path_factory, engine, images) -> Path:
    """The repository's files (tracked and new, nothing ignored) in a folder named after the
    project, plus a wheelhouse for the base image's Python: the build then needs no network."""
    folder = tmp_path_factory.mktemp("deploy") / PROJECT
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                 cwd=ROOT).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    with timed("wheelhouse (./dev wheelhouse)"):
        version = engine("run", "--rm", images.python, "python", "-c",
                         "import platform; print(platform.python_version())").stdout.strip()
        run(str(ROOT / "dev"), "wheelhouse", "--python", version, cwd=ROOT)
        shutil.copytree(ROOT / "requirements" / "wheelhouse",
                        folder / "requirements" / "wheelhouse")
    return folder


@dataclass
class Stack:
    project: Project
    url: str
    key: str
    password: str

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {key or self.key}"})


def leftover_down(tree: Path, name: str) -> None:
    """Removes what an interrupted earlier run left of project `name` (containers, volumes)."""
    Project(name, tree, ["docker-compose.yml"], {
        "BACKPROP_API_KEYS": "x:x", "BACKPROP_REDIS_PASSWORD": "x"}).compose(
        "down", "-v", "--remove-orphans", check=False, timeout=300)


@pytest.fixture(scope="session")
def stack(tree, images) -> Stack:
    """The README's deploy block, run as written in the copied tree, with the published port
    made loopback-only and free (BACKPROP_PORT, as the README offers) and its address swapped
    to match."""
    leftover_down(tree, PROJECT)
    port = free_port()
    env = {**images.compose_env(), "BACKPROP_PORT": f"127.0.0.1:{port}"}
    script = readme_block("Deploy with docker-compose").replace(
        "http://localhost:8000", f"http://127.0.0.1:{port}")
    assert "docker-compose up -d --build" in script
    with timed("build (docker-compose, classic builder) + up + ready"):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tree,
                              env=clean_env(**env), capture_output=True, text=True,
                              timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    settings = dict(line.split("=", 1) for line in (tree / ".env").read_text().splitlines())
    key = settings["BACKPROP_API_KEYS"].split(":", 1)[1]
    project = Project(PROJECT, tree, ["docker-compose.yml"], env)
    yield Stack(project, f"http://127.0.0.1:{port}", key, settings["BACKPROP_REDIS_PASSWORD"])
    project.compose("down", "-v", "--remove-orphans", check=False, timeout=300)
