"""/v1/jobs and /v1/models over real HTTP with real workers."""

import io

import numpy as np

from core.keys import Keys
from tests.service.helpers import blobs, classifier, upload_npz, wait_for_job


def submit(api, **body):
    return api.post("/v1/jobs", json=body)


def trained_job(api, epochs=5):
    X, y = blobs()
    dataset = upload_npz(api, X, y)
    answer = submit(api, dataset_id=dataset["id"], network=classifier(),
                    training={"optimizer": "adam", "learning_rate": 0.05, "epochs": epochs})
    assert answer.status_code == 202, answer.text
    return wait_for_job(api, answer.json()["id"]), X, y


def test_health_and_readiness_counts_workers_per_queue(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] == 2
    # The session stack's two workers serve the CPU queue; none serves the GPU queue.
    assert ready.json()["queues"] == {"training": 2, "training-gpu": 0}


def test_spec_problems_are_422_at_submit_time_naming_the_field(api):
    X, y = blobs()
    dataset = upload_npz(api, X, y)["id"]
    bad_activation = submit(api, dataset_id=dataset, network={
        "layers": [{"units": 3, "activation": "sigmoidal"}], "loss": "cross_entropy"})
    assert bad_activation.status_code == 422
    error = bad_activation.json()["error"]
    assert error["field"] == "network.layers[0].activation"
    assert "sigmoidal" in error["message"] and "tanh" in error["message"]

    nonsense_pair = submit(api, dataset_id=dataset, network={
        "layers": [{"units": 3, "activation": "softmax"}], "loss": "squared_error"})
    assert nonsense_pair.status_code == 422 and "softmax" in nonsense_pair.json()["error"]["message"]

    too_few_outputs = submit(api, dataset_id=dataset, network=classifier(classes=2))
    assert too_few_outputs.status_code == 422
    assert too_few_outputs.json()["error"]["field"] == "network.layers"
    assert "2 units" in too_few_outputs.json()["error"]["message"]
    assert "3 classes" in too_few_outputs.json()["error"]["message"]

    unknown_dataset = submit(api, dataset_id="ds_nope", network=classifier())
    assert unknown_dataset.status_code == 422 and "ds_nope" in unknown_dataset.json()["error"]["message"]

    both = submit(api, dataset_id=dataset, data={"X": [[1.0]], "y": [0]}, network=classifier())
    assert both.status_code == 422

    bad_optimizer = submit(api, dataset_id=dataset, network=classifier(),
                           training={"optimizer": "adamw"})
    assert bad_optimizer.status_code == 422 and "adam" in bad_optimizer.json()["error"]["message"]


def test_inline_data_job_history_and_since_epoch(api):
    X, y = blobs(n=60)
    answer = submit(api, data={"X": X.tolist(), "y": y.tolist()}, network=classifier(),
                    training={"optimizer": "sgd", "learning_rate": 0.1, "epochs": 6})
    assert answer.status_code == 202, answer.text
    job = wait_for_job(api, answer.json()["id"])
    assert job["status"] == "succeeded" and job["model_id"].startswith("mdl_")
    assert job["started_at"] <= job["finished_at"] and job["progress"]["eta_s"] == 0.0
    full = api.get(f"/v1/jobs/{job['id']}/history").json()["epochs"]
    assert [e["epoch"] for e in full] == [1, 2, 3, 4, 5, 6]
    tail = api.get(f"/v1/jobs/{job['id']}/history", params={"since_epoch": 4}).json()["epochs"]
    assert [e["epoch"] for e in tail] == [5, 6] and tail == full[4:]
    for key in ("loss", "val_loss", "metric", "seconds", "grad_norms", "phi_prime_mean"):
        assert key in full[0]


def test_gpu_job_with_no_gpu_worker_is_refused_naming_the_queue(api):
    X, y = blobs()
    dataset = upload_npz(api, X, y)["id"]
    refused = submit(api, dataset_id=dataset, network=classifier(), device="gpu")
    assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
    error = refused.json()["error"]
    assert error["field"] == "device"
    assert "no worker serves queue 'training-gpu'" in error["message"]
    assert "backprop worker --queues training-gpu" in error["message"]
    assert refused.json()["error"]["message"].endswith('or submit with "device": "cpu"')
    assert submit(api, dataset_id=dataset, network=classifier(), device="cpu",
                  training={"epochs": 1}).status_code == 202


def submitted_ids(api, n: int, epochs: int = 1) -> list[str]:
    X, y = blobs(n=30)
    body = {"data": {"X": X.tolist(), "y": y.tolist()}, "network": classifier(),
            "training": {"epochs": epochs}}
    ids = []
    for _ in range(n):
        answer = api.post("/v1/jobs", json=body)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    return ids


def test_status_filter_comes_before_the_limit(api):
    [running] = submitted_ids(api, 1, epochs=100_000)
    wait_for_job(api, running, until={"running"})
    newer = submitted_ids(api, 4)
    for job_id in newer:
        wait_for_job(api, job_id)
    try:
        listed = api.get("/v1/jobs", params={"status": "running", "limit": 2}).json()["jobs"]
        assert running in [j["id"] for j in listed]
        assert all(j["status"] == "running" for j in listed)
        newest = api.get("/v1/jobs", params={"limit": 2}).json()["jobs"]
        assert running not in [j["id"] for j in newest]  # what the filter used to miss
    finally:
        api.post(f"/v1/jobs/{running}/cancel")
    assert wait_for_job(api, running)["status"] == "canceled"
    finished = api.get("/v1/jobs", params={"status": "canceled", "limit": 1000}).json()["jobs"]
    assert running in [j["id"] for j in finished]
    bad = api.get("/v1/jobs", params={"status": "done"})
    assert bad.status_code == 422 and "running" in bad.json()["error"]["message"]


def test_pages_follow_the_next_cursor_newest_first(api):
    mine = submitted_ids(api, 7)
    seen, cursor, pages = [], None, 0
    while True:
        answer = api.get("/v1/jobs", params={"limit": 3, **({"before": cursor} if cursor
                                                           else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["jobs"]) <= 3
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next"]
        if cursor is None or set(mine) <= set(seen):
            break
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert [i for i in seen if i in mine] == mine[::-1] and pages >= 3
    bad = api.get("/v1/jobs", params={"before": "yesterday"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "before"
    for job_id in mine:
        wait_for_job(api, job_id)


def test_model_info_weights_and_predict(api):
    job, X, y = trained_job(api)
    model_id = job["model_id"]
    model = api.get(f"/v1/models/{model_id}").json()
    assert (model["n_inputs"], model["n_outputs"], model["task"]) == (4, 3, "classification")
    assert model["job_id"] == job["id"] and model["epochs_trained"] == 5

    weights = api.get(f"/v1/models/{model_id}/weights").json()["layers"]
    assert [np.array(layer["W"]).shape for layer in weights] == [(16, 4), (3, 16)]
    npz = api.get(f"/v1/models/{model_id}/weights", headers={"accept": "application/x-npz"})
    assert npz.headers["content-type"] == "application/x-npz"
    with np.load(io.BytesIO(npz.content), allow_pickle=False) as arrays:
        np.testing.assert_allclose(arrays["W1"], np.array(weights[1]["W"]), rtol=1e-6)

    predicted = api.post(f"/v1/models/{model_id}/predict", json={"inputs": X[:10].tolist()}).json()
    outputs = np.array(predicted["outputs"])
    assert outputs.shape == (10, 3)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, atol=1e-5)
    assert predicted["labels"] == outputs.argmax(axis=1).tolist()

    wrong_width = api.post(f"/v1/models/{model_id}/predict", json={"inputs": [[1.0, 2.0]]})
    assert wrong_width.status_code == 422 and "4 values" in wrong_width.json()["error"]["message"]


def test_delete_finished_job_removes_its_keys(api, redis_client):
    job, _, _ = trained_job(api, epochs=2)
    [unfinished] = submitted_ids(api, 1, epochs=100_000)
    refused = api.delete(f"/v1/jobs/{unfinished}")
    assert refused.status_code == 409 and "cancel it first" in refused.json()["error"]["message"]
    api.post(f"/v1/jobs/{unfinished}/cancel")
    assert wait_for_job(api, unfinished)["status"] == "canceled"
    assert api.delete(f"/v1/jobs/{unfinished}").status_code == 204
    assert api.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert api.get(f"/v1/models/{job['model_id']}").status_code == 404
    assert redis_client.keys(f"{Keys().job(job['id'])}*") == []
    assert redis_client.exists(Keys().model(job["model_id"])) == 0


def test_cancel_racing_a_worker_pickup_never_fails(api):
    """Cancel the moment a job is submitted, when a worker may be popping it: always a 202,
    and the job ends canceled (never started, or stopped) or, if it won the race, succeeded."""
    X, y = blobs(n=60)
    body = {"data": {"X": X.tolist(), "y": y.tolist()}, "network": classifier(),
            "training": {"epochs": 3}}
    ids = []
    for _ in range(12):
        job = api.post("/v1/jobs", json=body).json()
        answer = api.post(f"/v1/jobs/{job['id']}/cancel")
        assert answer.status_code in (202, 409), answer.text  # 409: it already succeeded
        ids.append(job["id"])
    ends = {wait_for_job(api, job_id)["status"] for job_id in ids}
    assert ends <= {"canceled", "succeeded"} and "canceled" in ends
