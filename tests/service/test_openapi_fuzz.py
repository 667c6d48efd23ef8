"""Property-based: schemathesis reads /openapi.json of a running stack and throws generated requests
(valid ones and deliberately invalid ones) at every operation it documents. No answer may be a 5xx,
every status must be one the document lists, and every body must match its documented schema.

The budget is fixed (a few examples per operation and mode, a per-example deadline, no shrinking),
so this file takes well under 90 s. The stack has tight limits and API keys: generated jobs stay
tiny, and the key is part of every request.

schemathesis's pytest loader (`schemathesis.pytest.from_fixture`) does not run under pytest 9, so
each operation's strategy is driven here with plain Hypothesis.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance, ignored_auth,
                                               response_schema_conformance,
                                               status_code_conformance)

from tests.service.helpers import classifier, own_stack, trained_records

KEY = "fuzz-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SMALL_LIMITS = {
    "BACKPROP_API_KEYS": f"fuzzer:{KEY}", "BACKPROP_MAX_EPOCHS": "3", "BACKPROP_MAX_LAYERS": "3",
    "BACKPROP_MAX_UNITS": "16", "BACKPROP_MAX_PARAMETERS": "2000",
    "BACKPROP_MAX_INLINE_ROWS": "64", "BACKPROP_MAX_DATASET_ROWS": "500",
    "BACKPROP_MAX_BODY_BYTES": "262144", "BACKPROP_MAX_PREDICT_ROWS": "50",
    "BACKPROP_JOB_TIMEOUT_S": "30",
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, ignored_auth,
          response_schema_conformance]
EXAMPLES_PER_OPERATION = 30
ID_PARAMS = ("dataset_id", "job_id", "model_id")
NETWORK = classifier(hidden=4, classes=2)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    """Its own Valkey, API and one worker: what the fuzzer creates never reaches other tests."""
    root = Path(tmp_path_factory.mktemp("fuzz"))
    stack = own_stack(root, workers=1, extra_env=SMALL_LIMITS)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def real_ids(fuzz_stack) -> dict[str, str]:
    """A dataset, a finished job and its model, so generated requests also reach real records."""
    with httpx.Client(base_url=fuzz_stack.url, headers=AUTH, timeout=30) as api:
        X = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.int64)
        return trained_records(api, X, y, NETWORK)


@pytest.fixture(scope="module")
def operations(fuzz_stack) -> list:
    config = schemathesis.Config.from_dict({"base-url": fuzz_stack.url})
    schema = schemathesis.openapi.from_url(f"{fuzz_stack.url}/openapi.json", config=config)
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 15, [op.label for op in found]
    return found


def fuzz_operation(operation, mode: GenerationMode, base_url: str, real_ids: dict) -> list[str]:
    """Run one operation's generated cases; returns a line per failed check (with a curl)."""
    failures: list[str] = []

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=10_000, derandomize=True,
              database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode), use_real_id=st.booleans())
    def run(case, use_real_id):
        # Half the cases aim at records that exist (DELETE excepted: it would remove the
        # records the other operations need), so the 2xx paths are fuzzed too, not only 404s.
        if use_real_id and case.method.upper() != "DELETE" and case.path_parameters:
            for name in ID_PARAMS:
                if name in case.path_parameters:
                    case.path_parameters[name] = real_ids[name]
        try:
            case.call_and_validate(base_url=base_url, headers=AUTH, checks=CHECKS, timeout=20)
        except (Exception, FailureGroup) as exc:  # noqa: BLE001 - all reported, none shrunk
            failures.append(f"{operation.label} ({mode.value}): {exc}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body): nothing to test
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)
def test_every_operation_keeps_its_documented_contract(fuzz_stack, operations, real_ids, mode):
    failures = []
    for operation in operations:
        failures += fuzz_operation(operation, mode, fuzz_stack.url, real_ids)
    assert not failures, "\n".join(failures[:20])


def test_the_fuzzed_stack_logged_no_crash(fuzz_stack, operations, real_ids):
    """A handled 4xx is fine; an exception that reached the logs is a bug even if answered."""
    text = "".join(p.read_text(errors="replace") for p in fuzz_stack.logs.glob("*.log"))
    assert "Traceback" not in text, text[-4000:]
