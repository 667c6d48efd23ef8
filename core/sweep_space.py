"""A sweep's search space: parse it, check it, and draw trials from it. Pure: no I/O, no engine.

A space maps a path into a job body (`training.learning_rate`, `network.layers.0.units`,
`network.layers` for whole architectures) to choices or a distribution:

    [choice, ...]              one of these values (any JSON: numbers, names, layer lists)
    {"uniform": [a, b]}        a float drawn evenly from [a, b)
    {"log_uniform": [a, b]}    a float whose log is drawn evenly (0 < a < b): learning rates
    {"int_uniform": [a, b]}    an integer from a to b inclusive

Random and ASHA sweeps draw each trial from a NumPy generator seeded with the sweep's seed, so
the same spec and seed give the same trials; a grid sweep takes every combination of choices.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# The parts of a job body a sweep may vary (not its data, device or time limit).
SWEEPABLE = ("network", "training", "preprocessing", "seed", "dtype")
MAX_CHOICES = 1000
MAX_PATHS = 50
PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


class SpaceError(ValueError):
    """A space (or a path in it) that cannot be used; `field` names the path at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _finite_pair(path: str, kind: str, value: Any) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) for v in value)):
        raise SpaceError(f"space.{path}", f'{{"{kind}": [low, high]}} takes two finite numbers, '
                                          f"not {value!r}")
    low, high = value
    if not low < high:
        raise SpaceError(f"space.{path}", f"{kind} needs low < high, got [{low}, {high}]")
    return float(low), float(high)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _int_uniform(rng: np.random.Generator, low: float, high: float) -> int:
    return int(rng.integers(int(low), int(high) + 1))


def _check_log(path: str, low: float, high: float) -> None:
    if low <= 0:
        raise SpaceError(f"space.{path}", f"log_uniform needs 0 < low, got {low}")


def _check_int(path: str, low: float, high: float) -> None:
    if low != int(low) or high != int(high):
        raise SpaceError(f"space.{path}", f"int_uniform takes integers, got [{low}, {high}]")


# Every distribution by name: (draw(rng, low, high), extra check of the bounds).
DISTRIBUTIONS: dict[str, tuple[Callable, Callable | None]] = {
    "uniform": (_uniform, None),
    "log_uniform": (_log_uniform, _check_log),
    "int_uniform": (_int_uniform, _check_int),
}


@dataclass(frozen=True)
class Dimension:
    """One path of the space: a list of choices, or a distribution over [low, high]."""

    path: str
    choices: tuple | None = None
    distribution: str | None = None
    low: float = 0.0
    high: float = 0.0

    def draw(self, rng: np.random.Generator) -> Any:
        if self.choices is not None:
            return copy.deepcopy(self.choices[int(rng.integers(len(self.choices)))])
        return DISTRIBUTIONS[self.distribution][0](rng, self.low, self.high)


def parse_space(space: Any) -> list[Dimension]:
    """The space's dimensions in the order given; SpaceError naming the path at fault."""
    if not isinstance(space, dict) or not space:
        raise SpaceError("space", "give at least one path, e.g. "
                                  '{"training.learning_rate": {"log_uniform": [0.001, 0.1]}}')
    if len(space) > MAX_PATHS:
        raise SpaceError("space", f"{len(space)} paths; at most {MAX_PATHS}")
    return [_dimension(path, spec) for path, spec in space.items()]


def _dimension(path: str, spec: Any) -> Dimension:
    if not PATH.match(path) or path.split(".")[0] not in SWEEPABLE:
        raise SpaceError(f"space.{path}", f"not a job field path; paths start with one of "
                                          f"{', '.join(SWEEPABLE)} and use dots, e.g. "
                                          f"training.learning_rate or network.layers.0.units")
    if isinstance(spec, list):
        if not spec or len(spec) > MAX_CHOICES:
            raise SpaceError(f"space.{path}", f"give 1 to {MAX_CHOICES} choices, not {len(spec)}")
        return Dimension(path, choices=tuple(spec))
    if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
        kind, bounds = next(iter(spec.items()))
        low, high = _finite_pair(path, kind, bounds)
        check = DISTRIBUTIONS[kind][1]
        if check is not None:
            check(path, low, high)
        return Dimension(path, distribution=kind, low=low, high=high)
    raise SpaceError(f"space.{path}", f"give a list of choices or one of "
                                      f"{', '.join(f'{{{name!r}: [low, high]}}' for name in DISTRIBUTIONS)}"
                                      f", not {spec!r}"[:400])


def grid_size(dimensions: list[Dimension]) -> int:
    """How many trials a grid over these dimensions has (SpaceError for a distribution)."""
    for dim in dimensions:
        if dim.choices is None:
            raise SpaceError(f"space.{dim.path}", f"a grid takes lists of choices, not a "
                                                  f"{dim.distribution} distribution; use "
                                                  f"strategy random or asha, or list values")
    return math.prod(len(dim.choices) for dim in dimensions)


def grid(dimensions: list[Dimension]) -> list[dict[str, Any]]:
    """Every combination of choices, as {path: value}, the first path varying slowest."""
    grid_size(dimensions)
    return [{dim.path: copy.deepcopy(value) for dim, value in zip(dimensions, combo)}
            for combo in itertools.product(*(dim.choices for dim in dimensions))]


def sample(dimensions: list[Dimension], trials: int, seed: int) -> list[dict[str, Any]]:
    """`trials` draws of {path: value} from a generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    return [{dim.path: dim.draw(rng) for dim in dimensions} for _ in range(trials)]


def apply(base: dict, params: dict[str, Any]) -> dict:
    """A copy of job body `base` with each path set to its value. Missing objects on the way
    are created; a list index must exist in the base (SpaceError naming the path)."""
    body = copy.deepcopy(base)
    for path, value in params.items():
        node: Any = body
        parts = path.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SpaceError(f"space.{path}", f"{'.'.join(parts[:i]) or 'body'} has "
                                                      f"{len(node)} items, so {part!r} is not "
                                                      f"an index of it; set it in base first")
                key: Any = int(part)
            elif isinstance(node, dict):
                key = part
                if not last and not isinstance(node.get(key), (dict, list)):
                    if key in node and node[key] is not None:
                        raise SpaceError(f"space.{path}", f"{'.'.join(parts[:i + 1])} is "
                                                          f"{node[key]!r}, not an object")
                    node[key] = {}
            else:
                raise SpaceError(f"space.{path}", f"{'.'.join(parts[:i])} is {node!r}, not an "
                                                  f"object or list")
            if last:
                node[key] = copy.deepcopy(value)
            else:
                node = node[key]
    return body
