"""`client.sweep(...)` and `backprop sweep spec.json --follow` against the session's real stack."""

from __future__ import annotations

import json
import re

from backprop_client import Client, Sweep, ValidationFailed
from tests.client.helpers import backprop, client_cli
from tests.service.table_helpers import PENGUINS

import pytest

BASE = {"network": {"layers": [{"units": 8, "activation": "tanh"},
                               {"units": 3, "activation": "softmax"}], "loss": "cross_entropy"},
        "training": {"optimizer": "sgd", "batch_size": 16}}
SPACE = {"training.learning_rate": {"log_uniform": [0.003, 0.3]},
         "network.layers.0.units": [4, 16]}


def test_client_sweep_waits_for_the_leaderboard(stack):
    with Client(stack.url) as client:
        dataset = client.upload_csv(PENGUINS, target="species")
        sweep = client.sweep(SPACE, BASE, dataset=dataset, trials=4, max_epochs=9,
                             min_epochs=1, seed=1)
        assert isinstance(sweep, Sweep) and sweep.status == "running"
        assert sweep.wait(progress=False, timeout=120).status == "succeeded"
        assert sweep.best["model_id"] and len(sweep.trials) == 4
        assert sweep.id in [s.id for s in client.sweeps()]
        with pytest.raises(ValidationFailed) as caught:
            client.sweep({"training.learning_rate": {"log_uniform": [0, 1]}}, BASE,
                         dataset=dataset)
        assert caught.value.field == "space.training.learning_rate"
        sweep.delete()


def test_backprop_sweep_follow_draws_the_trials_and_prints_the_best_model(stack, tmp_path):
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps({"base": BASE, "space": SPACE, "strategy": "random",
                                "trials": 3, "max_epochs": 4, "seed": 2}))
    done = backprop("sweep", str(spec), "--data", str(PENGUINS), "--target", "species",
                    "--follow", url=stack.url)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"mdl_[\w-]+", done.stdout.strip()), done.stdout
    tables = [line for line in done.stderr.splitlines()
              if line.startswith("sweep swp_") and " ended, " in line]
    assert tables and "succeeded" in tables[-1] and "trials 3/3 ended" in tables[-1]
    assert "*" in done.stderr  # the best trial is marked
    sweep_id = re.search(r"sweep (swp_\S+)", tables[-1]).group(1)
    listed = client_cli("sweeps", url=stack.url)
    assert listed.returncode == 0 and sweep_id in listed.stdout, listed.stderr
    status = client_cli("sweeps", sweep_id, "--json", url=stack.url)
    info = json.loads(status.stdout)
    assert info["best"]["model_id"] == done.stdout.strip()
    assert [t["epochs"] for t in info["trials"]] == [4, 4, 4]
    bad = backprop("sweep", str(spec), url=stack.url)
    assert bad.returncode == 2 and "give the data once" in bad.stderr
