"""/metrics and the request log, read while real requests and real jobs move them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from tests.service.helpers import (blobs, classifier, idle_gpu_worker, log_lines, own_stack,
                                   scrape, start_api, stop_api, value, wait_for_job)


def test_requests_are_counted_by_route_template_and_status(service_env):
    """On an API process of this test's own, so the counts are exactly its requests."""
    env = {k: v for k, v in {**os.environ, **service_env}.items()
           if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc, url = start_api(env)
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            for _ in range(3):
                assert api.get("/v1/jobs/job_metrics_probe").status_code == 404
            assert api.get("/no/such/route/xyz").status_code == 404
            samples = scrape(api)
    finally:
        stop_api(proc)
    route = {"method": "GET", "route": "/v1/jobs/{job_id}"}
    assert value(samples, "backprop_http_requests_total", status="404", **route) == 3
    assert value(samples, "backprop_http_request_duration_seconds_count", **route) == 3
    assert value(samples, "backprop_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert all("job_metrics_probe" not in str(key) and "xyz" not in str(key) for key in samples)


def test_jobs_queues_epochs_and_workers_move_with_real_jobs(tmp_path):
    """On a stack of this test's own (Valkey, API, 2 workers): the figures are its jobs'."""
    own = own_stack(tmp_path, workers=2)
    try:
        with httpx.Client(base_url=own.url, timeout=30) as api:
            check_job_figures(api, own.env["BACKPROP_REDIS_URL"])
    finally:
        own.stop()


def check_job_figures(api: httpx.Client, redis_url: str) -> None:
    deadline = time.monotonic() + 30
    while value(before := scrape(api), "backprop_workers") != 2:  # both registered
        assert time.monotonic() < deadline, "the workers did not register"
        time.sleep(0.1)
    assert value(before, "backprop_redis_up") == 1
    assert value(before, "backprop_epochs_trained_total") == 0
    X, y = blobs(n=30)
    done = api.post("/v1/jobs", json={"network": classifier(hidden=4), "training": {"epochs": 4},
                                      "data": {"X": X.tolist(), "y": y.tolist()}})
    assert done.status_code == 202, done.text
    assert wait_for_job(api, done.json()["id"])["status"] == "succeeded"
    # The GPU queue's worker takes no job here: this job waits there until canceled.
    with idle_gpu_worker(redis_url):
        waiting = api.post("/v1/jobs", json={"network": classifier(hidden=4), "device": "gpu",
                                             "data": {"X": X.tolist(), "y": y.tolist()}})
    assert waiting.status_code == 202, waiting.text
    try:
        during = scrape(api)
        assert value(during, "backprop_queue_length", queue="training-gpu") == 1
        assert value(during, "backprop_jobs", state="queued") == 1
        assert value(during, "backprop_jobs", state="running") == 0
        assert value(during, "backprop_epochs_trained_total") == 4
        assert value(during, "backprop_jobs_finished_total", state="succeeded") == 1
    finally:
        assert api.post(f"/v1/jobs/{waiting.json()['id']}/cancel").status_code == 202
    after = scrape(api)
    assert value(after, "backprop_queue_length", queue="training-gpu") == 0
    assert value(after, "backprop_jobs_finished_total", state="canceled") == 1


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


def test_api_processes_sharing_a_metrics_folder_count_each_others_requests(service_env, tmp_path):
    """What `--workers N` relies on, made deterministic: requests go to one process and are
    read from the other's /metrics."""
    env = {**os.environ, **service_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    first, first_url = start_api(env)
    try:
        second, second_url = start_api(env)
        try:
            route = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}
            with httpx.Client(base_url=first_url, timeout=30) as one, \
                    httpx.Client(base_url=second_url, timeout=30) as other:
                start = value(scrape(other), "backprop_http_requests_total", **route)
                for _ in range(7):
                    assert one.get("/v1/jobs/job_multiprocess_probe").status_code == 404
                assert other.get("/v1/jobs/job_multiprocess_probe").status_code == 404
                assert value(scrape(other), "backprop_http_requests_total", **route) == start + 8
                assert value(scrape(one), "backprop_http_requests_total", **route) == start + 8
        finally:
            stop_api(second)
    finally:
        stop_api(first)


def test_several_uvicorn_workers_get_a_shared_metrics_folder_made_for_them(service_env):
    env = {k: v for k, v in {**os.environ, **service_env}.items()
           if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc, url = start_api(env, workers=2)
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        folders = {dict(item.split("=", 1) for item in
                        Path(f"/proc/{child}/environ").read_text().split("\0") if "=" in item
                        ).get("PROMETHEUS_MULTIPROC_DIR") for child in children}
        folders.discard(None)
        assert len(folders) == 1, folders       # every uvicorn worker process shares one
        folder = Path(folders.pop())
        for _ in range(5):
            with httpx.Client(base_url=url, timeout=30) as fresh:   # new connections
                assert fresh.get("/v1/jobs/job_workers_probe").status_code == 404
        route = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}
        for _ in range(4):                     # whichever process answers: all 5
            with httpx.Client(base_url=url, timeout=30) as fresh:
                assert value(scrape(fresh), "backprop_http_requests_total", **route) == 5
        assert list(folder.glob("*.db"))
    finally:
        stop_api(proc)
    assert not folder.exists()                  # made for this run, removed after it
