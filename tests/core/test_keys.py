"""worker/keys.py is the only place that spells a Redis key."""

import ast
import inspect
from pathlib import Path

from core.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
KEY_FRAGMENTS = (":dataset:", ":job:", ":model:", ":tenant:", ":jobs:", ":lock:", "bp:")


def string_pieces(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_module_but_keys_spells_a_key():
    offenders = []
    for package in ("engine", "worker", "service"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "keys.py" and path.parent.name == "worker":
                continue
            for line, text in string_pieces(ast.parse(path.read_text())):
                if any(fragment in text for fragment in KEY_FRAGMENTS):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert offenders == []


def test_every_key_is_prefixed_and_distinct():
    keys = Keys("tst")
    made = []
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith("_"):
            continue
        arity = len(inspect.signature(method).parameters)
        made.append(method(*(["x"] * arity)))
    assert all(k.startswith("tst:") for k in made)
    assert len(set(made)) == len(made)
