"""The hashed locks in requirements/ against pyproject.toml (and client/pyproject.toml): they
go stale when a dependency changes until `./dev lock` runs, the fix these tests name."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def pins(lock: str) -> dict[str, list[str]]:
    """{name: [hash, ...]} of a lock file (one entry per name, markers aside)."""
    text = (REQUIREMENTS / lock).read_text()
    found: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==\S+", block)
        if match:
            found.setdefault(normalize(match.group(1)), []).extend(
                re.findall(r"--hash=sha256:[0-9a-f]{64}", block))
    return found


def project(path: Path = ROOT / "pyproject.toml") -> dict:
    return tomllib.loads(path.read_text())


LOCAL_DISTRIBUTIONS = {"backprop-client", "backprop-service"}


@pytest.mark.parametrize("lock,extras", [
    ("runtime.txt", []), ("gpu.txt", ["gpu"]), ("dev.txt", ["plot", "test", "peers"])])
def test_locks_pin_every_requirement_with_hashes(lock, extras):
    """Stale after a pyproject.toml change until `./dev lock` runs: that is the fix it names."""
    meta = project()["project"]
    wanted = {requirement_name(r) for r in meta["dependencies"]}
    wanted |= {requirement_name(r) for e in extras for r in meta["optional-dependencies"][e]}
    wanted -= LOCAL_DISTRIBUTIONS | {"torch"}
    locked = pins(lock)
    assert not wanted - set(locked), f"not in requirements/{lock}: run ./dev lock"
    assert all(locked.values()), "every pin carries its hashes"
    assert not LOCAL_DISTRIBUTIONS & set(locked), "local distributions install from their folders"


def test_client_dependencies_are_locked_too():
    client = ROOT / "client" / "pyproject.toml"
    if not client.exists():
        pytest.skip("no client/ distribution in this tree")
    wanted = {requirement_name(r) for r in project(client)["project"]["dependencies"]}
    assert not wanted - set(pins("runtime.txt")), "run ./dev lock"


def test_runtime_pins_are_the_same_in_every_lock():
    runtime = pins("runtime.txt")
    for lock in ("gpu.txt", "dev.txt"):
        others = pins(lock)
        assert all(others[name] == hashes for name, hashes in runtime.items()), lock


def test_torch_is_pinned_by_version_alone():
    """The dev-only peer: its file differs by machine (a local CPU build, or PyPI's CUDA
    build), so no hash; every lock that ./dev installs with --require-hashes leaves it out."""
    peers = [r for r in project()["project"]["optional-dependencies"]["peers"]
             if requirement_name(r) == "torch"]
    text = (REQUIREMENTS / "peers.txt").read_text()
    assert peers and peers[0].replace(" ", "") in text and "--hash" not in text
    assert "torch" not in pins("dev.txt") and "torch" not in pins("runtime.txt")


def test_lock_files_say_how_to_refresh_them():
    for lock in REQUIREMENTS.glob("*.txt"):
        assert "./dev lock" in "".join(lock.read_text().splitlines()[:2]), lock.name
