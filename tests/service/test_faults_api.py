"""The API process killed under `backprop up` (kill -9, as the out-of-memory killer does): it is
started again while the workers and Valkey run on, and nothing is lost."""

import signal

import httpx

from tests.service.fault_helpers import STOP_DEADLINE_S, children_by_role, ctrl_c, kill, wait_until


def test_a_killed_api_is_started_again_while_workers_and_valkey_run_on(up):
    url = f"http://127.0.0.1:{up.port}"
    before = children_by_role(up.pid)
    assert {"api1", "worker1", "worker2", "valkey1"} <= set(before), before
    job = httpx.post(f"{url}/v1/jobs", timeout=10, json={
        "network": {"layers": [{"units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
        "data": {"X": [[0.0], [1.0]], "y": [0, 1]}, "training": {"epochs": 1}}).json()
    kill(before["api1"], signal.SIGKILL)

    def answering_again():
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answering_again, 60, "the API answering again after kill -9")
    after = children_by_role(up.pid)
    assert after["api1"] != before["api1"]
    assert {k: v for k, v in after.items() if k != "api1"} == \
        {k: v for k, v in before.items() if k != "api1"}, "workers or Valkey were restarted"
    assert httpx.get(f"{url}/v1/jobs/{job['id']}", timeout=10).status_code == 200
    out, seconds = ctrl_c(up)
    assert up.returncode == 0, out
    assert "starting it again" in out
    assert seconds < STOP_DEADLINE_S, f"Ctrl-C took {seconds:.1f} s\n{out}"
