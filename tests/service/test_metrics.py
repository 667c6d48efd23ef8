"""/metrics and the request log, read while real requests and real jobs move them."""

from __future__ import annotations

import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.service.helpers import blobs, classifier, wait_for_job


def scrape(api: httpx.Client) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape."""
    answer = api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def log_lines(stack, predicate, timeout_s: float = 5.0) -> list[dict]:
    """The API's JSON log lines that match, waiting a little for them to be written."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = []
        for line in (stack.logs / "api.log").read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and predicate(entry):
                lines.append(entry)
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_requests_are_counted_by_route_template_and_status(api):
    before = scrape(api)
    for _ in range(3):
        assert api.get("/v1/jobs/job_metrics_probe").status_code == 404
    assert api.get("/no/such/route/xyz").status_code == 404
    after = scrape(api)
    route = {"method": "GET", "route": "/v1/jobs/{job_id}"}
    assert value(after, "backprop_http_requests_total", status="404", **route) == \
        value(before, "backprop_http_requests_total", status="404", **route) + 3
    assert value(after, "backprop_http_request_duration_seconds_count", **route) == \
        value(before, "backprop_http_request_duration_seconds_count", **route) + 3
    assert value(after, "backprop_http_requests_total", method="GET", route="unmatched",
                 status="404") >= 1
    assert all("job_metrics_probe" not in str(key) and "xyz" not in str(key) for key in after)


def test_jobs_queues_epochs_and_workers_move_with_real_jobs(api):
    before = scrape(api)
    assert value(before, "backprop_redis_up") == 1
    assert value(before, "backprop_workers") == 2
    X, y = blobs(n=30)
    done = api.post("/v1/jobs", json={"network": classifier(hidden=4), "training": {"epochs": 4},
                                      "data": {"X": X.tolist(), "y": y.tolist()}})
    assert done.status_code == 202, done.text
    assert wait_for_job(api, done.json()["id"])["status"] == "succeeded"
    # No worker listens on the GPU queue here: this job waits there until canceled.
    waiting = api.post("/v1/jobs", json={"network": classifier(hidden=4), "device": "gpu",
                                         "data": {"X": X.tolist(), "y": y.tolist()}})
    assert waiting.status_code == 202, waiting.text
    try:
        during = scrape(api)
        assert value(during, "backprop_queue_length", queue="training-gpu") == \
            value(before, "backprop_queue_length", queue="training-gpu") + 1
        assert value(during, "backprop_jobs", state="queued") >= 1
        assert value(during, "backprop_epochs_trained_total") >= \
            value(before, "backprop_epochs_trained_total") + 4
        assert value(during, "backprop_jobs_finished_total", state="succeeded") >= \
            value(before, "backprop_jobs_finished_total", state="succeeded") + 1
        assert ("backprop_jobs", (("state", "running"),)) in during
    finally:
        assert api.post(f"/v1/jobs/{waiting.json()['id']}/cancel").status_code == 202
    after = scrape(api)
    assert value(after, "backprop_queue_length", queue="training-gpu") == \
        value(before, "backprop_queue_length", queue="training-gpu")
    assert value(after, "backprop_jobs_finished_total", state="canceled") >= \
        value(before, "backprop_jobs_finished_total", state="canceled") + 1


def test_each_request_logs_one_json_line_without_secrets(api, stack):
    secret = "s3cret-token-never-logged"
    answer = api.get("/v1/jobs/job_log_probe", headers={"Authorization": f"Bearer {secret}",
                                                        "X-Api-Key": secret})
    assert answer.status_code == 404
    lines = log_lines(stack, lambda e: e.get("job_id") == "job_log_probe")
    assert len(lines) == 1, lines
    entry = lines[0]
    assert entry["route"] == "/v1/jobs/{job_id}" and entry["status"] == 404
    assert entry["tenant"] == "public" and entry["process"] == "api"
    assert 0 < entry["duration_ms"] < 10_000
    assert entry["message"] == "GET /v1/jobs/{job_id} 404"
    assert secret not in (stack.logs / "api.log").read_text(errors="replace")
