"""Sweeps through real HTTP against a stack of its own (two real workers): ASHA, random and
grid search on a real table, bad spaces, cancel and delete."""

from __future__ import annotations

import time

from service.sweep_submission import DEFAULT_VALIDATION_SPLIT
from tests.service.helpers import module_client, module_stack, wait_for_job
from tests.service.sweep_helpers import (BASE, DEFAULTS_SPACE, MAX_EPOCHS, SPACE, TRIALS, body_mass,
                                         held_out_r2, start, wait_for_sweep)

stack = module_stack("sweeps", workers=2)
api = module_client()

def test_asha_spends_at_most_half_the_epochs_and_its_best_beats_its_base(api):
    dataset_id, held_out = body_mass(api)
    sweep = start(api, dataset_id=dataset_id, base=BASE, space=SPACE, trials=TRIALS,
                  max_epochs=MAX_EPOCHS, seed=3)
    assert sweep["strategy"] == "asha" and sweep["rungs"] == [3, 9]
    done = wait_for_sweep(api, sweep["id"])
    assert done["status"] == "succeeded", done["progress"]
    trials = done["trials"]
    assert len(trials) == TRIALS
    assert done["epochs_trained"] == sum(t["epochs"] for t in trials)
    assert done["epochs_trained"] <= 0.5 * TRIALS * MAX_EPOCHS, done["epochs_trained"]
    assert {t["status"] for t in trials} <= {"succeeded", "stopped"}
    finished = [t for t in trials if t["status"] == "succeeded"]
    assert finished and all(t["epochs"] == MAX_EPOCHS for t in finished)
    assert all(t["epochs"] in (3, 9) for t in trials if t["status"] == "stopped")
    assert all(t["worker"] for t in trials)
    metrics = [t["metric"] for t in trials]
    assert metrics == sorted(metrics, reverse=True)  # best first (R^2 on validation rows)
    best = done["best"]
    assert best["job_id"] == finished[0]["job_id"] and best["model_id"]
    assert best["metric"] == max(t["metric"] for t in finished)

    # A promoted trial has one history, each epoch once, through its rungs.
    job_id = best["job_id"]
    history = api.get(f"/v1/jobs/{job_id}/history").json()["epochs"]
    assert [e["epoch"] for e in history] == list(range(1, MAX_EPOCHS + 1))
    rungs = next(t["rungs"] for t in trials if t["job_id"] == job_id)
    assert rungs == {str(r): history[r - 1]["val_metric"] for r in (3, 9)}
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["sweep_id"] == sweep["id"] and job["status"] == "succeeded"
    stopped = next(t for t in trials if t["status"] == "stopped")
    stopped_job = api.get(f"/v1/jobs/{stopped['job_id']}").json()
    assert stopped_job["status"] == "canceled" and stopped_job["model_id"] is None
    assert "not in the top 1/3" in stopped_job["error"]["message"]

    # Base as it is, trained for max_epochs.
    plain = api.post("/v1/jobs", json={**BASE, "dataset_id": dataset_id, "training": {
        **BASE["training"], "epochs": MAX_EPOCHS}})
    assert plain.status_code == 202, plain.text
    plain_model = wait_for_job(api, plain.json()["id"], 120)["model_id"]
    ours, theirs = (held_out_r2(api, best["model_id"], held_out),
                    held_out_r2(api, plain_model, held_out))
    assert ours >= theirs, (ours, theirs)


def test_asha_on_the_defaults_beats_the_default_job_on_held_out_rows(api):
    """12 trials around the defaults (base {}), trained up to the defaults' 200 epochs with
    their early stopping: at most half of 12 x 200 epochs, and the best model scores on rows
    never uploaded at least as well as the default job (a job of only the dataset). No margin:
    measured, seed 3 beats it by 0.016 R^2 (the same in three runs), and seeds 0 to 11 by
    0.0095 to 0.024."""
    dataset_id, held_out = body_mass(api)
    sweep = start(api, dataset_id=dataset_id, base={}, space=DEFAULTS_SPACE, trials=TRIALS,
                  seed=3)
    assert sweep["max_epochs"] == 200 and sweep["rungs"] == [23, 69]
    default = api.post("/v1/jobs", json={"dataset_id": dataset_id})
    assert default.status_code == 202, default.text
    done = wait_for_sweep(api, sweep["id"])
    assert done["status"] == "succeeded", done["progress"]
    assert done["epochs_trained"] <= 0.5 * TRIALS * 200, done["epochs_trained"]
    best = api.get(f"/v1/jobs/{done['best']['job_id']}").json()
    assert best["training"]["optimizer"] == "adam" and best["training"]["early_stopping"]
    default_job = wait_for_job(api, default.json()["id"], 120)
    assert default_job["status"] == "succeeded", default_job
    ours, theirs = (held_out_r2(api, done["best"]["model_id"], held_out),
                    held_out_r2(api, default_job["model_id"], held_out))
    assert ours >= theirs, (ours, theirs)


def test_random_with_the_same_seed_trains_every_trial_to_the_end(api):
    dataset_id, _ = body_mass(api)
    common = dict(dataset_id=dataset_id, base=BASE, space=SPACE, trials=6, max_epochs=6,
                  seed=3)
    sweep = start(api, strategy="random", **common)
    assert sweep["rungs"] == []
    done = wait_for_sweep(api, sweep["id"])
    assert done["status"] == "succeeded"
    assert [t["epochs"] for t in done["trials"]] == [6] * 6
    assert {t["status"] for t in done["trials"]} == {"succeeded"}
    assert done["epochs_trained"] == 36
    # The same seed draws the same trials (ASHA's too: only the schedule differs).
    asha = start(api, **common)
    by_index = sorted(done["trials"], key=lambda t: t["index"])
    assert [t["params"] for t in sorted(asha["trials"], key=lambda t: t["index"])] == \
        [t["params"] for t in by_index]
    api.post(f"/v1/sweeps/{asha['id']}/cancel")


def test_a_grid_trains_every_combination(api):
    dataset_id, _ = body_mass(api)
    sweep = start(api, dataset_id=dataset_id, base=BASE, strategy="grid", max_epochs=2,
                  space={"training.learning_rate": [0.01, 0.03],
                         "network.layers": [[{"units": 4, "activation": "tanh"},
                                             {"units": 1, "activation": "identity"}],
                                            [{"units": 8, "activation": "relu"},
                                             {"units": 4, "activation": "relu"},
                                             {"units": 1, "activation": "identity"}]]})
    done = wait_for_sweep(api, sweep["id"])
    assert len(done["trials"]) == 4 and done["epochs_trained"] == 8
    combos = {(t["params"]["training.learning_rate"], len(t["params"]["network.layers"]))
              for t in done["trials"]}
    assert combos == {(0.01, 2), (0.03, 2), (0.01, 3), (0.03, 3)}
    listed = api.get("/v1/sweeps").json()["sweeps"]
    assert sweep["id"] in [s["id"] for s in listed] and "trials" not in listed[0]


def test_bad_spaces_are_422_naming_the_path(api):
    dataset_id, _ = body_mass(api)
    cases = [
        ({"training.learning_rate": {"log_uniform": [0, 0.1]}}, {}, "space.training.learning_rate"),
        ({"training.learning_rate": {"uniform": [0.1]}}, {}, "space.training.learning_rate"),
        ({"training.learning_rate": {"normal": [0, 1]}}, {}, "space.training.learning_rate"),
        ({"training.learning_rate": []}, {}, "space.training.learning_rate"),
        ({"training.learning_rate": [-1.0]}, {}, "space.training.learning_rate"),
        ({"network.layers.5.units": [4]}, {}, "space.network.layers.5.units"),
        ({"network.layers.0.activation": ["swish-ish"]}, {}, "space.network.layers.0.activation"),
        ({"network.layers.0.units": [10**7]}, {}, "space.network.layers.0.units"),
        ({"dataset_id": ["x"]}, {}, "space.dataset_id"),
        ({"training.epochs": [3, 9]}, {}, "space.training.epochs"),
        ({"training.learning_rate": {"uniform": [0.01, 0.1]}}, {"strategy": "grid"},
         "space.training.learning_rate"),
        ({}, {}, "space"),
        ({"training.batch_size": [8]}, {"metric": "accuracy"}, "metric"),
        ({"training.batch_size": [8]}, {"min_epochs": 50, "max_epochs": 5}, "min_epochs"),
        ({"training.batch_size": [8]}, {"base": {**BASE, "dataset_id": "x"}}, "base.dataset_id"),
        ({"training.batch_size": [0, 8]}, {}, "space.training.batch_size"),
        ({"training.validation_split": [0.0]}, {}, "space.training.validation_split"),
        ({"training.batch_size": [8]}, {"base": {**BASE, "training": {"validation_split": 0}}},
         "base.training.validation_split"),
        ({f"training.x{i}": [1] for i in range(51)}, {}, "space"),
    ]
    for space, extra, field in cases:
        answer = api.post("/v1/sweeps", json={"dataset_id": dataset_id, "base": BASE,
                                              "space": space, **extra})
        assert answer.status_code == 422, (space, answer.text)
        assert answer.json()["error"]["field"] == field, (space, answer.json())
    missing = api.post("/v1/sweeps", json={"dataset_id": "ds_AAAAAAAAAAAAAAAA", "base": BASE,
                                           "space": {"training.batch_size": [8]}})
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "dataset_id"
    assert api.get("/v1/sweeps/swp_AAAAAAAAAAAAAAAA").status_code == 404
    assert api.get("/v1/sweeps/nonsense").status_code == 404


def test_cancel_ends_every_trial_and_delete_removes_them(api):
    dataset_id, _ = body_mass(api)
    sweep = start(api, dataset_id=dataset_id, base={**BASE, "training": {
        **BASE["training"], "batch_size": 1}}, space=SPACE, trials=8, max_epochs=400)
    assert api.delete(f"/v1/sweeps/{sweep['id']}").status_code == 409
    time.sleep(1.0)
    canceled = api.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert canceled.status_code == 202 and canceled.json()["cancel_requested"]
    done = wait_for_sweep(api, sweep["id"], 60)
    assert done["status"] == "canceled"
    assert {t["status"] for t in done["trials"]} <= {"canceled", "skipped", "stopped"}
    assert any(t["status"] == "skipped" for t in done["trials"])
    assert api.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 409
    jobs = [t["job_id"] for t in done["trials"] if t["job_id"]]
    assert api.delete(f"/v1/sweeps/{sweep['id']}").status_code == 204
    assert api.get(f"/v1/sweeps/{sweep['id']}").status_code == 404
    assert all(api.get(f"/v1/jobs/{j}").status_code == 404 for j in jobs)


def test_a_base_without_network_takes_the_job_defaults(api):
    """base as a job takes it: with no network, each trial gets the one chosen from the data."""
    dataset_id, _ = body_mass(api)
    sweep = start(api, dataset_id=dataset_id, strategy="random", trials=2, max_epochs=2,
                  space={"training.learning_rate": [0.001, 0.01]})
    done = wait_for_sweep(api, sweep["id"])
    assert done["status"] == "succeeded" and done["epochs_trained"] == 4
    job = api.get(f"/v1/jobs/{done['best']['job_id']}").json()
    assert job["network"]["loss"] == "squared_error"          # chosen for a numeric target
    assert job["training"]["validation_split"] == DEFAULT_VALIDATION_SPLIT  # ranks on val rows
    assert job["training"]["optimizer"] == "adam"              # the default training's
    assert job["training"]["learning_rate"] in (0.001, 0.01)
