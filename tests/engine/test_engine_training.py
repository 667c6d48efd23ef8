"""fit: records, determinism, resume, early stopping, cancellation, divergence, schedules."""
import io
import json
import math

import numpy as np
import pytest

from engine import Network, TrainingDiverged, TrainingSpec
from engine.schedules import learning_rate
from engine_helpers import make_classification, make_regression, spec

TRAIN = {"optimizer": "momentum", "learning_rate": 0.05, "epochs": 10, "batch_size": 16,
         "validation_split": 0.2, "seed": 3}


def _weights_equal(a, b):
    return all(np.array_equal(W0, W1) and np.array_equal(b0, b1)
               for (W0, b0), (W1, b1) in zip(a.params, b.params))


def test_record_fields_are_json_safe(clf_data=make_classification()):
    X, y = clf_data
    records = []
    history = Network(spec(units=6)).fit(X, y, TRAIN, on_epoch=records.append)
    assert records == history and len(history) == 10
    r = history[-1]
    assert set(r) == {"epoch", "loss", "val_loss", "metric", "metric_name", "val_metric",
                      "learning_rate", "seconds", "grad_norms", "phi_prime_mean"}
    assert [h["epoch"] for h in history] == list(range(1, 11))
    assert r["metric_name"] == "accuracy" and 0.8 < r["metric"] <= 1 and 0.7 < r["val_metric"] <= 1
    assert len(r["grad_norms"]) == len(r["phi_prime_mean"]) == 2
    assert all(g > 0 for g in r["grad_norms"])
    assert 0 < r["phi_prime_mean"][0] <= 1                     # tanh' in (0, 1]
    assert history[-1]["loss"] < history[0]["loss"]
    json.dumps(history)


def test_regression_reports_r2_and_no_validation_without_split():
    X, Y = make_regression()
    net = Network(spec(out="identity", loss="squared_error", k=2, units=10))
    h = net.fit(X, Y, {"optimizer": "adam", "learning_rate": 0.01, "epochs": 30})
    assert h[-1]["metric_name"] == "r2" and h[-1]["metric"] > 0.8
    assert h[-1]["val_loss"] is None and h[-1]["val_metric"] is None


def test_grad_norm_matches_loss_and_grads_for_full_batch():
    X, y = make_classification(n=50)
    net = Network(spec(), dtype="float64", seed=2)
    net.build(X.shape[1])
    _, grads = net.loss_and_grads(X, y)
    h = net.fit(X, y, {"optimizer": "gd", "learning_rate": 0.1, "epochs": 1})
    expected = [np.linalg.norm(dW) for dW, _ in grads]
    np.testing.assert_allclose(h[0]["grad_norms"], expected, rtol=1e-10)


def test_saturated_sigmoid_shows_vanishing_phi_prime():
    X, y = make_classification(n=64)
    net = Network(spec(hidden=("sigmoid",), init={"sigma": 30.0}), seed=0)
    h = net.fit(20 * X, y, {"epochs": 1, "learning_rate": 0.01})
    assert h[0]["phi_prime_mean"][0] < 0.05                  # sigma'(z) <= 1/4, here ~0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_is_bit_identical(dtype):
    X, y = make_classification()
    runs = [Network(spec(), seed=5, dtype=dtype).fit(X, y, TRAIN) for _ in range(2)]
    assert [r["loss"] for r in runs[0]] == [r["loss"] for r in runs[1]]
    assert [r["val_loss"] for r in runs[0]] == [r["val_loss"] for r in runs[1]]
    other = Network(spec(), seed=5, dtype=dtype).fit(X, y, {**TRAIN, "seed": 4})
    assert [r["loss"] for r in other] != [r["loss"] for r in runs[0]]


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
def test_resume_through_npz_is_bit_identical(optimizer):
    X, y = make_classification()
    training = {**TRAIN, "optimizer": optimizer, "learning_rate": 0.01,
                "schedule": {"name": "cosine"}, "weight_decay": 1e-3,
                "early_stopping": {"patience": 50, "min_delta": 0.0}}
    straight = Network(spec(), seed=1)
    full = straight.fit(X, y, training)

    first = Network(spec(), seed=1)                           # a worker cancelled after epoch 4
    part1 = first.fit(X, y, training, on_epoch=lambda r: None,
                      should_stop=lambda: first.epochs_done == 4)
    assert first.stopped and len(part1) == 4
    buf = io.BytesIO()
    np.savez(buf, **first.state())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        resumed = Network.from_state(npz)
    assert resumed.epochs_done == 4
    part2 = resumed.fit(X, y, training)
    assert [r["epoch"] for r in part2] == list(range(5, 11))
    assert [r["loss"] for r in part1 + part2] == [r["loss"] for r in full]
    assert [r["val_loss"] for r in part1 + part2] == [r["val_loss"] for r in full]
    assert _weights_equal(resumed, straight)
    assert resumed.fit(X, y, training) == []                  # nothing left to do


def test_fit_in_two_calls_equals_one_call():
    X, y = make_classification()
    one = Network(spec(), seed=2)
    h = one.fit(X, y, TRAIN)
    two = Network(spec(), seed=2)
    h2 = two.fit(X, y, {**TRAIN, "epochs": 3}) + two.fit(X, y, TRAIN)
    assert [r["loss"] for r in h] == [r["loss"] for r in h2]
    assert _weights_equal(one, two)


def test_save_bytes_round_trip_keeps_everything():
    X, y = make_classification()
    net = Network(spec(), seed=1, dtype="float64")
    net.fit(X, y, {**TRAIN, "epochs": 2})
    back = Network.from_bytes(net.save_bytes())
    assert back.spec == net.spec and back.dtype == "float64" and back.n_inputs == 5
    assert back.epochs_done == 2 and _weights_equal(back, net)
    assert all(isinstance(v, np.ndarray) for v in net.state().values())
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


def test_state_of_untrained_net_restores():
    net = Network(spec(), n_inputs=5, seed=9)
    back = Network.from_state(net.state())
    assert _weights_equal(back, net) and back.epochs_done == 0


def test_early_stopping_restores_best_weights():
    X, y = make_classification(n=200)
    net = Network(spec(units=16), seed=0)
    seen = {}

    def remember(record):
        seen[record["epoch"]] = net.params

    h = net.fit(X, y, {"optimizer": "adam", "learning_rate": 0.05, "epochs": 200,
                       "batch_size": 8, "validation_split": 0.3,
                       "early_stopping": {"patience": 3, "min_delta": 0.0}}, on_epoch=remember)
    assert net.stopped_early and len(h) < 200
    val = [r["val_loss"] for r in h]
    best_epoch = int(np.argmin(val)) + 1
    assert len(h) - best_epoch == 3                           # patience epochs without progress
    for (W, b), (Wb, bb) in zip(net.params, seen[best_epoch]):
        assert np.array_equal(W, Wb) and np.array_equal(b, bb)
    assert net.fit(X, y, {"epochs": 500}) == []               # a stopped run stays stopped


def test_early_stopping_on_training_loss_without_restore():
    X, y = make_classification(n=60)
    net = Network(spec(), seed=0)
    h = net.fit(X, y, {"learning_rate": 1e-6, "epochs": 50,
                       "early_stopping": {"patience": 2, "min_delta": 1.0,
                                          "monitor": "loss", "restore_best": False}})
    assert net.stopped_early and len(h) == 3


def test_should_stop_between_batches():
    X, y = make_classification(n=100)
    net = Network(spec(), seed=0)
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 15                                # 7 batches per epoch

    h = net.fit(X, y, {"epochs": 10, "batch_size": 16}, should_stop=should_stop)
    assert net.stopped and len(h) == 2 and net.epochs_done == 2
    assert len(calls) == 16
    rest = net.fit(X, y, {"epochs": 10, "batch_size": 16})
    assert not net.stopped and [r["epoch"] for r in rest] == list(range(3, 11))


def test_divergence_names_epoch_layer_and_smaller_rate():
    X, Y = make_regression()
    net = Network(spec(hidden=("relu", "relu"), out="identity", loss="squared_error", k=2,
                       units=16), seed=0)
    with pytest.raises(TrainingDiverged) as err:
        net.fit(1e3 * X, 1e3 * Y, {"learning_rate": 5.0, "epochs": 50, "batch_size": 8})
    e = err.value
    assert isinstance(e, ValueError)
    assert 1 <= e.epoch <= 50 and 1 <= e.layer <= 3
    message = str(e)
    assert f"epoch {e.epoch}" in message and f"layer {e.layer}" in message
    assert "learning_rate 5 " in message and "try 0.5" in message


@pytest.mark.parametrize("schedule, expected", [
    ({"name": "constant"}, [0.1] * 6),
    ({"name": "step", "step_size": 2, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]),
    ({"name": "exponential", "gamma": 0.5}, [0.1 * 0.5**e for e in range(6)]),
    ({"name": "cosine", "min_lr": 0.0},
     [0.05 * (1 + math.cos(math.pi * e / 6)) for e in range(6)]),
    ({"name": "cosine", "t_max": 2, "min_lr": 0.01}, [0.1, 0.055, 0.01, 0.01, 0.01, 0.01]),
])
def test_schedules(schedule, expected):
    training = TrainingSpec(learning_rate=0.1, epochs=6, schedule=schedule)
    got = [learning_rate(training, e) for e in range(6)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    X, y = make_classification(n=40)
    h = Network(spec()).fit(X, y, training)
    np.testing.assert_allclose([r["learning_rate"] for r in h], expected, rtol=1e-12)


def test_full_batch_gd_equals_manual_gradient_steps():
    X, y = make_classification(n=30)
    net = Network(spec(), seed=4, dtype="float64")
    manual = Network(spec(), seed=4, dtype="float64", n_inputs=5)
    net.fit(X, y, {"optimizer": "gd", "learning_rate": 0.3, "epochs": 3, "batch_size": 7})
    for _ in range(3):
        _, grads = manual.loss_and_grads(X, y)
        manual.params = [(W - 0.3 * dW, b - 0.3 * db)
                         for (W, b), (dW, db) in zip(manual.params, grads)]
    for (W, b), (Wm, bm) in zip(net.params, manual.params):
        np.testing.assert_allclose(W, Wm, rtol=1e-12)
        np.testing.assert_allclose(b, bm, rtol=1e-12, atol=1e-15)


def test_too_small_validation_split_is_explained():
    X, y = make_classification(n=4)
    with pytest.raises(ValueError, match="validation_split"):
        Network(spec()).fit(X, y, {"validation_split": 0.05})


def test_fused_sgd_step_matches_the_plain_path(monkeypatch):
    """Plain SGD updates W inside the gradient GEMM when NumPy's OpenBLAS allows it."""
    from engine import blas

    if not blas.available("float64"):
        pytest.skip("this NumPy build has no OpenBLAS symbol to fuse with")
    X, y = make_classification(n=400)
    training = {"optimizer": "sgd", "learning_rate": 0.2, "epochs": 3, "batch_size": 8}
    calls = []
    real = blas.accumulate_at_b
    monkeypatch.setattr(blas, "accumulate_at_b", lambda *a: calls.append(real(*a)) or calls[-1])
    fused = Network(spec(), seed=0, dtype="float64")
    h_fused = fused.fit(X, y, training)
    assert len(calls) == 2 * 3 * (50 - 8) and all(calls)     # every layer of unprobed batches
    monkeypatch.setattr(blas, "ENABLED", False)
    plain = Network(spec(), seed=0, dtype="float64")
    h_plain = plain.fit(X, y, training)
    np.testing.assert_allclose([r["loss"] for r in h_fused], [r["loss"] for r in h_plain],
                               rtol=1e-12)
    for (W, b), (Wp, bp) in zip(fused.params, plain.params):
        np.testing.assert_allclose(W, Wp, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b, bp, rtol=1e-10, atol=1e-13)


def test_fused_sgd_is_deterministic_and_resumes_exactly():
    X, y = make_classification(n=400)
    training = {"optimizer": "sgd", "learning_rate": 0.1, "epochs": 4, "batch_size": 16}
    straight = Network(spec(), seed=3)
    full = straight.fit(X, y, training)
    again = Network(spec(), seed=3).fit(X, y, training)
    assert [r["loss"] for r in full] == [r["loss"] for r in again]
    first = Network(spec(), seed=3)
    part = first.fit(X, y, {**training, "epochs": 2})
    resumed = Network.from_bytes(first.save_bytes())
    part += resumed.fit(X, y, training)
    assert [r["loss"] for r in part] == [r["loss"] for r in full]
    assert _weights_equal(resumed, straight)
