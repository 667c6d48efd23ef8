"""The compose files as `docker-compose config` resolves them (the Dockerfiles are checked in
test_dockerfiles.py, the locks in test_locks.py). No Docker engine is needed: tests/deploy
builds and runs them for real.

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
PUBLISH_FILE = ROOT / "docker-compose.publish.yml"
TLS_FILE = ROOT / "docker-compose.tls.yml"
WORKERS_FILE = ROOT / "docker-compose.workers.yml"
DOCKERFILE = ROOT / "Dockerfile"
GPU_DOCKERFILE = ROOT / "Dockerfile.gpu"
COMPOSE = shutil.which("docker-compose")
APP_SERVICES = ("api", "worker", "worker-gpu")
TEST_KEYS = "alice:test-key-not-a-secret"
TEST_PASSWORD = "0123abcd"
TEST_ENV = {"BACKPROP_API_KEYS": TEST_KEYS, "BACKPROP_REDIS_PASSWORD": TEST_PASSWORD}

needs_compose = pytest.mark.skipif(
    COMPOSE is None,
    reason="the docker-compose binary is not on PATH; install it (Debian/Ubuntu: "
           "apt-get install -y --no-install-recommends docker-compose) to check the compose file")


def compose_config(tmp_path: Path, *files: Path, **env: str) -> subprocess.CompletedProcess:
    """`docker-compose config` of `files` (default: docker-compose.yml) with the gpu profile on,
    given `env` and none of the caller's BACKPROP_*/COMPOSE_* variables or .env file (nor a
    PYTHONPATH: Debian's docker-compose is a Python program of the system interpreter)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("BACKPROP_", "COMPOSE_", "DOCKER_"))
             and k not in ("PYTHONPATH", "PYTHONHOME")}
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    file_args = [arg for f in (files or (COMPOSE_FILE,)) for arg in ("--file", str(f))]
    return subprocess.run(
        [COMPOSE, "--env-file", str(empty_env_file), *file_args,
         "--project-directory", str(ROOT), "--profile", "gpu", "config"],
        cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    result = compose_config(tmp_path_factory.mktemp("compose"), **TEST_ENV)
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
@pytest.mark.parametrize("variable,hint", [("BACKPROP_API_KEYS", "tenant:key"),
                                           ("BACKPROP_REDIS_PASSWORD", "openssl rand")])
def test_secrets_are_required(tmp_path, variable, hint, value):
    """No API without keys, no Redis without its password: compose says which and how."""
    env = {k: v for k, v in TEST_ENV.items() if k != variable}
    if value is not None:
        env[variable] = value
    result = compose_config(tmp_path, **env)
    assert result.returncode != 0, f"compose must refuse to run without {variable}"
    message = result.stderr + result.stdout
    assert f"set {variable}" in message and hint in message, message


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


def acl_users(redis: dict) -> dict[str, list[str]]:
    """The --user rules of a Valkey command line: {user name: [rule, ...]}."""
    command, users, current = command_of(redis), {}, None
    for arg in command[1:]:
        if arg.startswith("--"):
            current = arg == "--user"
            name = None
            continue
        if current and name is None:
            name = arg
            users[name] = []
        elif current:
            users[name].append(arg)
    return users


@needs_compose
def test_redis_has_one_password_protected_user_and_no_default_user(services):
    users = acl_users(services["redis"])
    assert users["default"] == ["off"]
    rules = users["backprop"]
    assert "on" in rules and f">{TEST_PASSWORD}" in rules and "nopass" not in rules
    assert "-@admin" in rules, "the service needs no CONFIG, ACL, SHUTDOWN or DEBUG"
    health = " ".join(services["redis"]["healthcheck"]["test"])
    assert "--user backprop" in health and "BACKPROP_REDIS_PASSWORD" in health


@needs_compose
@pytest.mark.parametrize("maxmemory", [None, "512mb"])
def test_redis_memory_is_capped_without_eviction(tmp_path, maxmemory):
    env = {**TEST_ENV, **({"BACKPROP_REDIS_MAXMEMORY": maxmemory} if maxmemory else {})}
    result = compose_config(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    command = command_of(yaml.safe_load(result.stdout)["services"]["redis"])
    assert command[command.index("--maxmemory") + 1] == (maxmemory or "2gb")
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


@needs_compose
def test_redis_is_published_only_with_the_publish_file(tmp_path, services):
    assert not services["redis"].get("ports"), "docker-compose.yml alone must not publish Redis"
    published = {}
    for publish in (None, "127.0.0.1:16379"):
        env = {**TEST_ENV, **({"BACKPROP_REDIS_PUBLISH": publish} if publish else {})}
        result = compose_config(tmp_path, COMPOSE_FILE, PUBLISH_FILE, **env)
        assert result.returncode == 0, result.stderr
        redis = yaml.safe_load(result.stdout)["services"]["redis"]
        assert container_ports(redis) == [6379]
        port = redis["ports"][0]
        if isinstance(port, str):  # "127.0.0.1:16379:6379/tcp"
            host_ip, host_port, _ = port.split(":")
            port = {"host_ip": host_ip, "published": host_port}
        published[publish] = (port.get("host_ip"), int(port["published"]))
    assert published == {None: (None, 6379), "127.0.0.1:16379": ("127.0.0.1", 16379)}


@needs_compose
def test_tls_file_closes_the_plain_port_and_clients_check_the_certificate(tmp_path):
    result = compose_config(tmp_path, COMPOSE_FILE, TLS_FILE, **TEST_ENV,
                            BACKPROP_REDIS_TLS_DIR="/srv/tls")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    command = command_of(services["redis"])
    assert command[command.index("--port") + 1] == "0"
    assert command[command.index("--tls-port") + 1] == "6379"
    assert acl_users(services["redis"])["default"] == ["off"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--tls" in " ".join(services["redis"]["healthcheck"]["test"])
    for name in APP_SERVICES:
        url = env_of(services[name])["BACKPROP_REDIS_URL"]
        assert url == (f"rediss://backprop:{TEST_PASSWORD}@redis:6379/0"
                       "?ssl_ca_certs=/tls/ca.crt"), name
        mounts = [v if isinstance(v, dict) else
                  dict(zip(("source", "target"), str(v).split(":")[:2]))
                  for v in services[name]["volumes"]]
        assert [(m["source"], m["target"]) for m in mounts] == [
            ("/srv/tls/ca.crt", "/tls/ca.crt")], f"{name} gets the CA certificate alone"


@needs_compose
def test_remote_workers_file_runs_the_worker_service_of_the_stack(tmp_path, services):
    url = f"redis://backprop:{TEST_PASSWORD}@redis-host:6379/0"
    missing = compose_config(tmp_path, WORKERS_FILE)
    assert missing.returncode != 0 and "set BACKPROP_REDIS_URL" in missing.stderr + missing.stdout
    result = compose_config(tmp_path, WORKERS_FILE, BACKPROP_REDIS_URL=url)
    assert result.returncode == 0, result.stderr
    remote = yaml.safe_load(result.stdout)["services"]
    assert set(remote) == {"worker"}
    worker, local = remote["worker"], services["worker"]
    for key in ("image", "build", "command", "healthcheck", "cap_drop", "security_opt",
                "stop_grace_period", "restart"):
        assert worker[key] == local[key], key
    assert env_of(worker)["BACKPROP_REDIS_URL"] == url
    assert "BACKPROP_API_KEYS" not in env_of(worker) and not worker.get("ports")


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
        assert (env_of(services[name])["BACKPROP_REDIS_URL"]
                == f"redis://backprop:{TEST_PASSWORD}@redis:6379/0"), name


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
    assert Path(gpu["build"]["dockerfile"]).name == GPU_DOCKERFILE.name
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
    result = compose_config(tmp_path, **TEST_ENV,
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
def test_cpu_services_build_the_default_stage_of_the_plain_dockerfile(services):
    for name in ("api", "worker"):
        build = services[name]["build"]
        assert "target" not in build and Path(build.get("dockerfile", "Dockerfile")).name == \
            "Dockerfile", name


@needs_compose
def test_base_images_are_build_arguments(tmp_path):
    result = compose_config(tmp_path, **TEST_ENV, BACKPROP_PYTHON_IMAGE="mirror/python:3.11",
                            BACKPROP_CUDA_IMAGE="mirror/cuda:12",
                            BACKPROP_REDIS_IMAGE="mirror/valkey:8")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("api", "worker"):
        assert services[name]["build"]["args"] == {"PYTHON_IMAGE": "mirror/python:3.11"}, name
    assert services["worker-gpu"]["build"]["args"] == {"CUDA_IMAGE": "mirror/cuda:12"}
    assert services["redis"]["image"] == "mirror/valkey:8"
    for arg, dockerfile in (("PYTHON_IMAGE", DOCKERFILE), ("CUDA_IMAGE", GPU_DOCKERFILE)):
        assert re.search(rf"^ARG {arg}=", dockerfile.read_text(), re.M), (arg, dockerfile)
