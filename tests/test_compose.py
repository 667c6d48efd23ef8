"""The container files: docker-compose.yml as `docker-compose config` resolves it, and plain-text
checks of the Dockerfile and .dockerignore. No Docker engine is needed (none builds here).

The compose tests need the `docker-compose` binary (CI: `apt-get install -y
--no-install-recommends docker-compose`) and skip, saying so, where it is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = shutil.which("docker-compose")
APP_SERVICES = ("api", "worker", "worker-gpu")
TEST_KEYS = "alice:test-key-not-a-secret"

needs_compose = pytest.mark.skipif(
    COMPOSE is None,
    reason="the docker-compose binary is not on PATH; install it (Debian/Ubuntu: "
           "apt-get install -y --no-install-recommends docker-compose) to check the compose file")


def compose_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`docker-compose config` with the gpu profile on, given `env` and none of the caller's
    BACKPROP_*/COMPOSE_* variables or .env file (nor a PYTHONPATH: Debian's docker-compose is
    a Python program of the system interpreter)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("BACKPROP_", "COMPOSE_", "DOCKER_"))
             and k not in ("PYTHONPATH", "PYTHONHOME")}
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    return subprocess.run(
        [COMPOSE, "--env-file", str(empty_env_file), "--file", str(COMPOSE_FILE),
         "--project-directory", str(ROOT), "--profile", "gpu", "config"],
        cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    result = compose_config(tmp_path_factory.mktemp("compose"), BACKPROP_API_KEYS=TEST_KEYS)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(config) -> dict:
    return config["services"]


def seconds(duration) -> float:
    """Compose durations ("30s", "1m30s", "1.5s") or plain numbers, in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"([\d.]+)(h|ms|us|m|s)", str(duration))
    assert parts, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def container_ports(service: dict) -> list[int]:
    """Container-side ports, from the short ("8000:8000/tcp") or the long ({target: 8000}) form."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append(int(port["target"]))
        else:
            ports.append(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def env_of(service: dict) -> dict:
    env = service.get("environment", {})
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return env


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else [str(c) for c in command]


# --- docker-compose.yml -----------------------------------------------------------------------

@needs_compose
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_api_keys_are_required(tmp_path, value):
    env = {} if value is None else {"BACKPROP_API_KEYS": value}
    result = compose_config(tmp_path, **env)
    assert result.returncode != 0, "compose must refuse to run the API without API keys"
    message = result.stderr + result.stdout
    assert "set BACKPROP_API_KEYS" in message and "tenant:key" in message, message


@needs_compose
def test_api_gets_the_keys_and_the_port(services):
    api = services["api"]
    assert env_of(api)["BACKPROP_API_KEYS"] == TEST_KEYS
    assert 8000 in container_ports(api)
    health = " ".join(api["healthcheck"]["test"])
    assert "/healthz" in health and "curl" not in health  # slim images have no curl


@needs_compose
def test_workers_do_not_see_the_api_keys(services):
    for name in ("worker", "worker-gpu"):
        assert "BACKPROP_API_KEYS" not in env_of(services[name]), name


@needs_compose
def test_redis_persists_to_a_named_volume(config, services):
    redis = services["redis"]
    command = command_of(redis)
    assert command[command.index("--appendonly") + 1] == "yes"
    volumes = [v if isinstance(v, dict) else
               dict(zip(("source", "target"), str(v).split(":")[:2]))
               for v in redis["volumes"]]
    data = [v for v in volumes if v["target"] == "/data"]
    assert data, "redis needs a volume at /data"
    assert data[0]["source"] in config["volumes"], "the /data volume must be a named volume"
    assert "ping" in " ".join(redis["healthcheck"]["test"])
    assert not redis.get("ports"), "Redis has no password: it must not be published"


@needs_compose
def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


@needs_compose
def test_app_services_wait_for_healthy_redis(services):
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
        assert env_of(services[name])["BACKPROP_REDIS_URL"] == "redis://redis:6379/0", name


@needs_compose
def test_api_and_worker_are_one_image_differing_by_command(services):
    api, worker = services["api"], services["worker"]
    assert api["image"] == worker["image"]
    assert api["build"] == worker["build"]
    assert command_of(api)[:2] == ["backprop", "api"]
    assert command_of(worker)[:2] == ["backprop", "worker"]
    same = {k: v for k, v in api.items()
            if k not in ("command", "environment", "ports", "healthcheck")}
    assert same == {k: v for k, v in worker.items() if k in same}, \
        "api and worker should differ only by command, ports, health check and API keys"


@needs_compose
def test_worker_scales(services):
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container_name breaks --scale worker=N"
    assert not worker.get("ports"), "published ports break --scale worker=N"
    assert seconds(worker["stop_grace_period"]) >= 30, "workers need time to checkpoint"


@needs_compose
def test_gpu_worker_is_opt_in_and_reserves_an_nvidia_gpu(services):
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["target"] == "gpu"
    assert gpu["image"] != services["worker"]["image"]
    command = command_of(gpu)
    assert command[:2] == ["backprop", "worker"]
    assert command[command.index("--queues") + 1] == "training-gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "container_name" not in gpu and not gpu.get("ports")
    assert seconds(gpu["stop_grace_period"]) >= 30


@needs_compose
def test_gpu_worker_listens_on_the_configured_gpu_queue(tmp_path):
    result = compose_config(tmp_path, BACKPROP_API_KEYS=TEST_KEYS,
                            BACKPROP_GPU_QUEUE="gpu-a100", BACKPROP_PORT="127.0.0.1:9000")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    gpu = services["worker-gpu"]
    command = command_of(gpu)
    assert command[command.index("--queues") + 1] == "gpu-a100"
    for name in APP_SERVICES:  # the API enqueues on the queue the GPU worker listens to
        assert env_of(services[name])["BACKPROP_GPU_QUEUE"] == "gpu-a100", name
    assert container_ports(services["api"]) == [8000]


@needs_compose
def test_build_targets_are_dockerfile_stages(services):
    stages = {name for name, _ in dockerfile_stages()}
    for name in APP_SERVICES:
        assert services[name]["build"]["target"] in stages, name


# --- Dockerfile (plain text) ------------------------------------------------------------------

def dockerfile_stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(stage name, [(INSTRUCTION, arguments), ...]), ...] with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.search(r"\s+AS\s+(\S+)\s*$", args, re.IGNORECASE)
            stages.append((match.group(1) if match else str(len(stages)), []))
        elif stages:
            stages[-1][1].append((instruction, args.strip()))
    return stages


def final_user(instructions: list[tuple[str, str]]) -> str | None:
    users = [args.split(":")[0] for instruction, args in instructions if instruction == "USER"]
    return users[-1] if users else None


def test_dockerfile_is_multi_stage():
    stages = dict(dockerfile_stages())
    assert len(stages) >= 2
    assert {"builder", "runtime", "gpu"} <= set(stages)


@pytest.mark.parametrize("stage", ["runtime", "gpu", "final"])
def test_images_run_as_non_root(stage):
    stages = dockerfile_stages()
    instructions = stages[-1][1] if stage == "final" else dict(stages)[stage]
    user = final_user(instructions)
    assert user is not None and user not in ("root", "0"), f"{stage} stage must set a non-root USER"


def test_default_target_is_the_cpu_image():
    assert dockerfile_stages()[-1][0] == "runtime"


@pytest.mark.parametrize("builder", ["builder", "gpu-builder"])
def test_dependencies_are_installed_before_the_source_is_copied(builder):
    instructions = dict(dockerfile_stages())[builder]
    copies = [i for i, (instr, _) in enumerate(instructions) if instr == "COPY"]
    assert instructions[copies[0]][1].split()[0] == "pyproject.toml"
    source_copy = copies[1]
    dependency_install = [i for i, (instr, args) in enumerate(instructions)
                          if instr == "RUN" and "pip install -r" in args]
    assert dependency_install and dependency_install[0] < source_copy


def test_gpu_image_installs_the_gpu_extra():
    run_lines = " ".join(args for instr, args in dict(dockerfile_stages())["gpu-builder"]
                         if instr == "RUN")
    assert '"gpu,' in run_lines


# --- .dockerignore ----------------------------------------------------------------------------

def dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last pattern matching the
    path or one of its parent folders decides; `!` patterns bring paths back."""
    ignored = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = "".join(
            "(.*/)?" if tok == "**/" else ".*" if tok == "**" else "[^/]*" if tok == "*"
            else "[^/]" if tok == "?" else tok if tok.startswith("[") else re.escape(tok)
            for tok in re.findall(r"\*\*/|\*\*|\*|\?|\[[^\]]*\]|[^*?\[]+", pattern))
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("path", [
    ".env", ".env.production", ".git/HEAD", ".venv/bin/python", ".backprop/appendonly.aof",
    "bench/results/run.json", "engine/__pycache__/spec.cpython-311.pyc", "tests/conftest.py",
    "backprop_service.egg-info/PKG-INFO", "docker-compose.yml"])
def test_dockerignore_leaves_out(path):
    assert dockerignored(path)


@pytest.mark.parametrize("path", [
    "pyproject.toml", "README.md", "engine/spec.py", "worker/process.py", "service/cli.py",
    "service/routes/health.py"])
def test_dockerignore_keeps(path):
    assert not dockerignored(path)
