"""The sweep space: parsing, drawing and setting paths (pure: no Redis, no engine)."""

from __future__ import annotations

import math

import pytest

from core.sweep_space import SpaceError, apply, grid, grid_size, parse_space, sample


def test_draws_are_in_range_and_the_same_seed_draws_the_same_trials():
    dims = parse_space({"training.learning_rate": {"log_uniform": [1e-4, 1e-1]},
                        "training.momentum": {"uniform": [0.5, 0.99]},
                        "network.layers.0.units": {"int_uniform": [4, 6]},
                        "network.layers.0.activation": ["relu", "tanh"]})
    trials = sample(dims, 200, seed=7)
    assert trials == sample(dims, 200, seed=7) and trials != sample(dims, 200, seed=8)
    rates = [t["training.learning_rate"] for t in trials]
    assert all(1e-4 <= r < 1e-1 for r in rates)
    # log-uniform: about as many draws below 1e-2.5 as above
    below = sum(math.log10(r) < -2.5 for r in rates)
    assert 60 < below < 140
    assert {t["network.layers.0.units"] for t in trials} == {4, 5, 6}
    assert all(isinstance(t["network.layers.0.units"], int) for t in trials)
    assert {t["network.layers.0.activation"] for t in trials} == {"relu", "tanh"}


def test_a_grid_is_every_combination():
    dims = parse_space({"training.x": [1, 2, 3], "training.y": ["p", "q"]})
    assert grid_size(dims) == 6
    combos = grid(dims)
    assert combos[:2] == [{"training.x": 1, "training.y": "p"},
                          {"training.x": 1, "training.y": "q"}]
    assert len(combos) == 6 and {(c["training.x"], c["training.y"]) for c in combos} == {
        (x, y) for x in (1, 2, 3) for y in "pq"}


@pytest.mark.parametrize("space, field", [
    ({}, "space"),
    ([], "space"),
    ({"training.lr": []}, "space.training.lr"),
    ({"training.lr": {"uniform": [1, 1]}}, "space.training.lr"),
    ({"training.lr": {"uniform": [0, "x"]}}, "space.training.lr"),
    ({"training.lr": {"uniform": [0, float("inf")]}}, "space.training.lr"),
    ({"training.lr": {"log_uniform": [-1, 1]}}, "space.training.lr"),
    ({"training.lr": {"int_uniform": [1.5, 3]}}, "space.training.lr"),
    ({"training.lr": {"uniform": [0, 1], "log_uniform": [1, 2]}}, "space.training.lr"),
    ({"training.lr": 0.1}, "space.training.lr"),
    ({"data.X": [1]}, "space.data.X"),
    ({"training..lr": [1]}, "space.training..lr"),
])
def test_bad_spaces_name_their_path(space, field):
    with pytest.raises(SpaceError) as caught:
        parse_space(space)
    assert caught.value.field == field


def test_a_grid_refuses_distributions():
    with pytest.raises(SpaceError) as caught:
        grid_size(parse_space({"training.x": [1], "training.lr": {"uniform": [0, 1]}}))
    assert caught.value.field == "space.training.lr"


def test_apply_sets_paths_in_objects_and_lists_and_keeps_the_base():
    base = {"network": {"layers": [{"units": 4, "activation": "relu"}]}}
    body = apply(base, {"network.layers.0.units": 32, "training.learning_rate": 0.1,
                        "network.layers.0.activation": "tanh"})
    assert body == {"network": {"layers": [{"units": 32, "activation": "tanh"}]},
                    "training": {"learning_rate": 0.1}}
    assert base["network"]["layers"][0]["units"] == 4
    whole = apply(base, {"network.layers": [{"units": 1, "activation": "identity"}]})
    assert whole["network"]["layers"] == [{"units": 1, "activation": "identity"}]
    for params in ({"network.layers.3.units": 1}, {"network.layers.x": 1},
                   {"network.layers.0.units.deeper": 1}):
        with pytest.raises(SpaceError) as caught:
            apply(base, params)
        assert caught.value.field == f"space.{next(iter(params))}"
