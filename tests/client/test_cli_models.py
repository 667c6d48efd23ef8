"""`backprop-client train` without a spec (the service's defaults), then `history`, `model` and
`evaluate`, as real subprocesses against the session's stack; and Model.evaluate."""

from __future__ import annotations

import re
from pathlib import Path

import palmerpenguins

from backprop_client import Client
from tests.client.helpers import client_cli

PENGUINS = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


def test_default_training_then_history_model_and_evaluate(stack):
    done = client_cli("train", "--data", str(PENGUINS), "--target", "species", "--seed", "0",
                      "--follow", url=stack.url)
    assert done.returncode == 0, done.stderr
    model_id = done.stdout.strip()
    ended = re.search(r"succeeded after (\d+) epochs, kept epoch (\d+) of (\d+)", done.stderr)
    assert ended, done.stderr
    assert int(ended.group(2)) <= int(ended.group(1)) == int(ended.group(3))
    job_id = re.search(r"training job (job_\S+):", done.stderr).group(1)

    history = client_cli("history", job_id, url=stack.url)
    assert history.returncode == 0, history.stderr
    assert f"kept epoch {ended.group(2)} of {ended.group(3)}" in history.stderr

    model = client_cli("model", model_id, url=stack.url)
    assert model.returncode == 0, model.stderr
    assert f"kept epoch {ended.group(2)}" in model.stdout
    assert "feature importance (on the validation rows" in model.stdout
    assert re.search(r"^bill_length_mm\s+\S+", model.stdout, re.M), model.stdout

    scored = client_cli("evaluate", model_id, str(PENGUINS), url=stack.url)
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.startswith("344 rows: accuracy ")
    assert "confusion matrix" in scored.stdout and "Chinstrap" in scored.stdout

    with Client(stack.url) as client:
        found = client.model(model_id).evaluate(csv=PENGUINS)
        assert found["n_rows"] == 344 and found["metrics"]["accuracy"] > 0.9
