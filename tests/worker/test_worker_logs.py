"""What a worker logs (what `backprop up` shows): a job's state changes, never each epoch, and
never RQ's "Job OK" after a job that failed (RQ's own lines are warnings and errors only)."""

from __future__ import annotations

import json
import time

from tests.service.helpers import blobs, classifier, upload_npz, wait_for_job


def worker_log_entries(stack) -> list[dict]:
    entries = []
    for path in sorted(stack.logs.glob("worker*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                entries.append({"message": line})
    return entries


def test_worker_logs_say_state_changes_not_epochs_and_no_job_ok(stack, api):
    X, y = blobs(n=60)
    dataset = upload_npz(api, X, y * 1.0e6, name="diverges")["id"]
    failing = api.post("/v1/jobs", json={
        "dataset_id": dataset, "network": {"layers": [{"units": 4, "activation": "relu"},
                                                      {"units": 1, "activation": "identity"}],
                                           "loss": "squared_error"},
        "preprocessing": "none",
        "training": {"optimizer": "sgd", "learning_rate": 1e6, "epochs": 30}}).json()["id"]
    dataset = upload_npz(api, X, y, name="fine")["id"]
    fine = api.post("/v1/jobs", json={"dataset_id": dataset, "network": classifier(hidden=4),
                                      "training": {"epochs": 12}}).json()["id"]
    assert wait_for_job(api, failing)["status"] == "failed"
    assert wait_for_job(api, fine)["status"] == "succeeded"

    # The API shows a job's end before its worker logs it: wait for both lines.
    deadline = time.monotonic() + 30
    while True:
        entries = worker_log_entries(stack)
        of = {job: [e["message"] for e in entries if e.get("job_id") == job]
              for job in (failing, fine)}
        if "job succeeded" in of[fine] and "job failed" in " ".join(of[failing]):
            break
        assert time.monotonic() < deadline, of
        time.sleep(0.2)
    assert any(m.startswith("job failed") for m in of[failing]), of[failing]
    assert "job succeeded" in of[fine], of[fine]
    assert "training started" in " ".join(of[fine])
    assert not [m for m in of[fine] + of[failing] if m.startswith("epoch ")]
    assert not [e for e in entries if "Job OK" in e.get("message", "")]
