"""The Dockerfiles and .dockerignore, checked as text (tests/deploy builds them for real)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
GPU_DOCKERFILE = ROOT / "Dockerfile.gpu"
DOCKERIGNORE = ROOT / ".dockerignore"


def dockerfile_stages(path: Path = DOCKERFILE) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(stage name, [(INSTRUCTION, arguments), ...]), ...] with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
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


def test_dockerfiles_are_multi_stage():
    assert [name for name, _ in dockerfile_stages()] == ["builder", "runtime"]
    assert [name for name, _ in dockerfile_stages(GPU_DOCKERFILE)] == ["base", "builder", "gpu"]


def test_cpu_dockerfile_never_names_a_cuda_base():
    """The classic builder pulls the base of every stage in the file: a CUDA stage in the CPU
    Dockerfile would pull it for a plain `docker build .`."""
    code = " ".join(f"{instr} {args}" for _, instructions in dockerfile_stages()
                    for instr, args in instructions).lower()
    froms = re.findall(r"^\s*(?:FROM|ARG)\s.*$", DOCKERFILE.read_text(), re.M | re.I)
    for text in (code, " ".join(froms).lower()):
        assert "cuda" not in text and "nvidia" not in text


@pytest.mark.parametrize("path", [DOCKERFILE, GPU_DOCKERFILE], ids=["cpu", "gpu"])
def test_images_run_as_non_root_with_matching_uid_and_gid(path):
    stages = dockerfile_stages(path)
    user = final_user(stages[-1][1])
    assert user is not None and user not in ("root", "0"), f"{path.name} must end as non-root"
    runs = " ".join(args for _, instructions in stages for instr, args in instructions
                    if instr == "RUN")
    assert "groupadd --gid 10001 backprop" in runs
    assert re.search(r"useradd --uid 10001 --gid backprop ", runs)
    assert "--system" not in runs, "a --system user with uid 10001 makes useradd warn"


def test_workers_expose_no_port():
    """Workers run the CPU image too; the API's port is published by compose."""
    assert all(instr != "EXPOSE" for _, instructions in dockerfile_stages()
               for instr, _ in instructions)


@pytest.mark.parametrize("path,lock", [(DOCKERFILE, "runtime.txt"),
                                       (GPU_DOCKERFILE, "gpu.txt")], ids=["cpu", "gpu"])
def test_dependencies_come_from_the_lock_before_the_source_is_copied(path, lock):
    instructions = dict(dockerfile_stages(path))["builder"]
    copies = [i for i, (instr, _) in enumerate(instructions) if instr == "COPY"]
    assert instructions[copies[0]][1].split() == ["requirements/", "requirements/"]
    assert instructions[copies[1]][1].split() == [".", "./"]
    runs = [(i, args) for i, (instr, args) in enumerate(instructions) if instr == "RUN"]
    locked = [i for i, args in runs if f"--require-hashes -r requirements/{lock}" in args]
    assert locked and copies[0] < locked[0] < copies[1]
    local = [args for i, args in runs if i > copies[1]]
    assert local and "--no-deps" in local[0] and "./client ." in local[0]
    assert "pip check" in local[0]
    unlocked = [args for _, args in runs if "pip install" in args
                and "--require-hashes" not in args and "--no-deps" not in args]
    assert not unlocked, f"every install must come from a lock: {unlocked}"


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
    "backprop_service.egg-info/PKG-INFO", "docker-compose.yml", "tls/redis.key",
    "client/backprop_client.egg-info/PKG-INFO"])
def test_dockerignore_leaves_out(path):
    assert dockerignored(path)


@pytest.mark.parametrize("path", [
    "pyproject.toml", "README.md", "engine/spec.py", "worker/process.py", "service/cli.py",
    "service/routes/health.py", "requirements/runtime.txt", "requirements/wheelhouse/x.whl",
    "client/pyproject.toml", "client/backprop_client/api.py"])
def test_dockerignore_keeps(path):
    assert not dockerignored(path)
