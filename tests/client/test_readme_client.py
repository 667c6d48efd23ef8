"""The README's Python client example is what the client does: run as written, against the
live service."""

from __future__ import annotations

import re

import numpy as np

from tests.readme_helpers import section


def test_the_python_client_example_trains_and_predicts(stack, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", section("Python client and CLI"), flags=re.S)
    monkeypatch.setenv("BACKPROP_URL", stack.url)
    monkeypatch.delenv("BACKPROP_API_KEY", raising=False)
    names: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), names)
    job, curves, labels, y = names["job"], names["curves"], names["labels"], names["y"]
    assert job.status == "succeeded" and curves["epoch"].tolist() == list(range(1, 41))
    assert names["model"].id == job.model_id and labels.shape == (len(y) - 1400,)
    assert (labels == y[1400:]).mean() >= 0.9
    assert np.isfinite(curves["val_loss"]).all()
    names["client"].close()
