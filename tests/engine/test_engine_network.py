"""Network construction, parameters, prediction, dtype and the device switch."""
import sys
import threading

import numpy as np
import pytest

from engine import ACTIVATIONS, DeviceUnavailable, Network, NetworkSpec, TrainingDiverged
from engine import labels_from_outputs
from engine.backend import get_backend
from engine.initializers import standard_normal
from engine.network import SMALL_PREDICT_ROWS
from engine_helpers import make_classification, make_regression, spec


def test_accepts_dict_or_model_and_builds_lazily():
    net = Network(spec())
    assert net.n_inputs is None and net.n_outputs == 3 and net.device == "cpu"
    with pytest.raises(ValueError, match="no parameters yet"):
        net.params
    X, _ = make_classification(d=5)
    assert net.predict(X).shape == (len(X), 3) and net.n_inputs == 5
    same = Network(NetworkSpec.model_validate(spec()), n_inputs=5)
    assert [W.shape for W, _ in same.params] == [(8, 5), (3, 8)]
    assert all(np.array_equal(W0, W1) for (W0, _), (W1, _) in zip(net.params, same.params))


def test_init_follows_the_lecture_scale():
    s = spec(units=400, init={"sigma": 2.0})
    (W1, b1), (W2, _) = Network(s, n_inputs=1000, seed=0, dtype="float64").params
    assert W1.std() == pytest.approx(2.0 / np.sqrt(1000), rel=0.02)   # fan-in
    assert not b1.any()
    out = Network({**s, "init": {"sigma": 2.0, "fan": "out"}}, n_inputs=1000, dtype="float64")
    assert out.params[0][0].std() == pytest.approx(2.0 / np.sqrt(400), rel=0.02)
    uni = Network({**s, "init": {"distribution": "uniform"}}, n_inputs=1000, dtype="float64")
    W = uni.params[0][0]
    assert W.std() == pytest.approx(1 / np.sqrt(1000), rel=0.02)
    assert np.abs(W).max() <= np.sqrt(3 / 1000)
    he = Network({**s, "init": {"scheme": "he"}}, n_inputs=1000, dtype="float64")
    assert he.params[0][0].std() == pytest.approx(np.sqrt(2 / 1000), rel=0.02)
    xavier = Network({**s, "init": {"scheme": "xavier"}}, n_inputs=1000, dtype="float64")
    assert xavier.params[0][0].std() == pytest.approx(np.sqrt(2 / 1400), rel=0.02)


def test_init_draws_are_standard_normal_and_the_same_for_every_dtype():
    z = standard_normal(np.random.default_rng(3), 1_000_001).astype(np.float64)
    assert z.shape == (1_000_001,)
    assert abs(z.mean()) < 0.005 and z.std() == pytest.approx(1, abs=0.005)
    assert np.mean(z**3) == pytest.approx(0, abs=0.02)              # symmetric
    assert np.mean(z**4) == pytest.approx(3, abs=0.05)              # normal kurtosis
    for k, share in ((1, 0.682689), (2, 0.954500), (3, 0.997300)):  # P(|z| < k)
        assert np.mean(np.abs(z) < k) == pytest.approx(share, abs=0.002)
    W32 = Network(spec(), n_inputs=5, seed=4).params[0][0]
    W64 = Network(spec(), n_inputs=5, seed=4, dtype="float64").params[0][0]
    assert W32.dtype == np.float32 and np.array_equal(W32, W64.astype(np.float32))


def test_params_setter_checks_shapes_and_values():
    net = Network(spec(), n_inputs=5)
    params = net.params
    with pytest.raises(ValueError, match="expected 2"):
        net.params = params[:1]
    with pytest.raises(ValueError, match=r"layer 2: W must have shape \(3, 8\)"):
        net.params = [params[0], (params[1][0].T, params[1][1])]
    with pytest.raises(ValueError, match="NaN"):
        net.params = [params[0], (params[1][0] * np.nan, params[1][1])]
    new = [(W + 1.0, b - 1.0) for W, b in params]
    net.params = new
    assert all(np.array_equal(W, Wn) and W.dtype == np.float32
               for (W, _), (Wn, _) in zip(net.params, new))
    net.params[0][0][...] = 0                                      # a copy: no effect
    assert net.params[0][0].any()
    fresh = Network(spec())
    fresh.params = new                                             # sets n_inputs
    assert fresh.n_inputs == 5


def test_width_mismatch_is_an_error():
    net = Network(spec(), n_inputs=4)
    X, y = make_classification(d=5)
    with pytest.raises(ValueError, match="takes 4 inputs"):
        net.fit(X, y)
    with pytest.raises(ValueError, match="takes 4 inputs"):
        net.predict(X)


def test_predict_labels():
    X, y = make_classification()
    clf = Network(spec(), seed=0)
    clf.fit(X, y, {"epochs": 30, "learning_rate": 0.1})
    assert (clf.predict_labels(X) == y).mean() > 0.9
    assert np.allclose(clf.predict(X).sum(axis=1), 1, atol=1e-5)
    binary = Network(spec(out="sigmoid", loss="binary_cross_entropy", k=1), seed=0)
    yb = (y == 0).astype(int)
    binary.fit(X, yb, {"epochs": 30, "learning_rate": 0.1})
    labels = binary.predict_labels(X)
    assert labels.shape == (len(X),) and set(np.unique(labels)) <= {0, 1}
    assert (labels == yb).mean() > 0.9
    reg = Network(spec(out="identity", loss="squared_error", k=2), n_inputs=4)
    with pytest.raises(ValueError, match="use predict"):
        reg.predict_labels(make_regression()[0])


def test_float64_on_request_and_bad_dtype():
    X, Y = make_regression()
    net = Network(spec(out="identity", loss="huber", k=2), dtype="float64")
    assert net.predict(X).dtype == np.float64
    assert Network(spec(), n_inputs=2).predict(np.ones((1, 2))).dtype == np.float32
    with pytest.raises(ValueError, match="float32, float64"):
        Network(spec(), dtype="float16")


def test_device_switch_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)                # import cupy -> ImportError
    with pytest.raises(DeviceUnavailable, match="device 'gpu' needs CuPy") as err:
        Network(spec(), device="gpu")
    assert "device='cpu'" in str(err.value) and isinstance(err.value, ValueError)
    net = Network(spec(), device="auto")
    assert net.device == "cpu" and get_backend("auto").xp is np
    with pytest.raises(ValueError, match="auto, cpu, gpu"):
        Network(spec(), device="tpu")


def test_loss_and_grads_leaves_weights_alone():
    X, y = make_classification()
    net = Network(spec(), n_inputs=5, dtype="float64")
    before = net.params
    loss, grads = net.loss_and_grads(X, y)
    assert loss == pytest.approx(np.log(3), rel=0.3)
    assert [g[0].shape for g in grads] == [W.shape for W, _ in before]
    assert all(np.array_equal(W, W1) for (W, _), (W1, _) in zip(before, net.params))


def _fake_cupy():
    """A stand-in 'cupy' backed by NumPy, so the GPU code path (no per-batch host sync) runs."""
    import types

    fake = types.ModuleType("cupy")
    fake.__getattr__ = lambda name: getattr(np, name)
    fake.asnumpy = np.asarray
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    return fake


def test_gpu_code_path_matches_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    X, y = make_classification()
    training = {"optimizer": "adam", "epochs": 3, "validation_split": 0.25, "seed": 1}
    gpu = Network(spec(), seed=0, device="gpu")
    assert gpu.device == "gpu" and get_backend("auto").device == "gpu"
    h_gpu = gpu.fit(X, y, training)
    h_cpu = Network(spec(), seed=0).fit(X, y, training)
    for a, b in zip(h_gpu, h_cpu):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["val_loss"] == b["val_loss"] and a["metric"] == b["metric"]
        assert isinstance(a["loss"], float) and isinstance(a["metric"], float)
    restored = Network.from_state(gpu.state(), device="cpu")
    np.testing.assert_array_equal(restored.predict(X), gpu.predict(X))


@pytest.mark.parametrize("optimizer, rate", [("sgd", 0.3), ("momentum", 0.3), ("momentum", 3.0),
                                             ("sgd", 10.0)])
def test_gpu_code_path_names_the_batch_and_layer_the_cpu_names_on_divergence(monkeypatch,
                                                                             optimizer, rate):
    """The GPU path checks the loss once per epoch, when the weights and buffers have moved on
    past the failing batch; it replays the epoch from its start to name what the CPU names."""
    from engine import blas, propagation

    # The CPU's own faster kernels (a transposed small-batch GEMM, SGD fused into the GEMM)
    # round differently from the GPU path's; off, both paths compute the same weights.
    monkeypatch.setattr(propagation, "TRANSPOSED_GEMM_ROWS", 0)
    monkeypatch.setattr(blas, "ENABLED", False)
    X, Y = make_regression()
    s = spec(hidden=("relu", "tanh"), out="identity", loss="squared_error", k=2, units=16)
    training = {"optimizer": optimizer, "learning_rate": rate, "epochs": 30, "batch_size": 8,
                "seed": 2}
    errors = {}
    for device in ("cpu", "gpu"):
        if device == "gpu":
            monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
        net = Network(s, seed=0, device=device)
        with pytest.raises(TrainingDiverged) as err:
            net.fit(1e3 * X, 1e3 * Y, training)
        errors[device] = err.value
    cpu, gpu = errors["cpu"], errors["gpu"]
    assert "(batch 15)" not in str(cpu)                     # not the epoch's last batch
    assert (gpu.epoch, gpu.layer, str(gpu)) == (cpu.epoch, cpu.layer, str(cpu))
    assert f"learning_rate {rate:g} is probably too large" in str(gpu)


def test_labels_from_outputs_is_what_predict_labels_answers():
    X, y = make_classification()
    softmax = Network(spec(), n_inputs=5, seed=1)
    np.testing.assert_array_equal(labels_from_outputs(softmax.spec, softmax.predict(X)),
                                  softmax.predict_labels(X))
    outputs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    np.testing.assert_array_equal(labels_from_outputs(spec(), outputs), [1, 0])
    one = spec(out="sigmoid", loss="binary_cross_entropy", k=1)
    labels = labels_from_outputs(one, np.array([[0.2], [0.51], [0.5]]))
    assert labels.shape == (3,) and labels.tolist() == [0, 1, 0]
    several = spec(out="sigmoid", loss="squared_error", k=2)
    assert labels_from_outputs(several, np.array([[0.9, 0.1]])).tolist() == [[1, 0]]
    with pytest.raises(ValueError, match="use predict"):
        labels_from_outputs(spec(out="identity", loss="squared_error"), outputs)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_sum_abs_derivative_matches_the_derivative(name):
    act = ACTIVATIONS[name]
    z = np.random.default_rng(0).normal(scale=3, size=(7, 5))
    f = act.forward(z.copy())
    assert act.sum_abs_derivative(f) / f.size == pytest.approx(np.abs(act.derivative(f)).mean(),
                                                        rel=1e-12, abs=1e-15)


def _wide_net() -> Network:
    spec = {"layers": [{"units": 32, "activation": "relu"}, {"units": 16, "activation": "tanh"},
                       {"units": 4, "activation": "softmax"}], "loss": "cross_entropy"}
    return Network(spec, n_inputs=12, seed=3)


def test_small_predicts_reuse_buffers_yet_answer_like_the_chunked_path():
    net = _wide_net()
    X = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    whole = net.predict(X)                                   # 40 rows: the chunked path
    assert len(X) > SMALL_PREDICT_ROWS
    first = net.predict(X[:1])
    kept = first.copy()
    for rows in (1, 2, 5, SMALL_PREDICT_ROWS):
        np.testing.assert_allclose(net.predict(X[:rows]), whole[:rows], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(first, kept)               # an answer is never overwritten
    assert not np.shares_memory(first, net.predict(X[:1]))


def test_small_predicts_from_many_threads_at_once_do_not_mix():
    net = _wide_net()
    X = np.random.default_rng(1).normal(size=(64, 12)).astype(np.float32)
    expected = net.predict(X)
    errors = []

    def predict_rows(i):
        for _ in range(200):
            got = net.predict(X[i:i + 1])
            if not np.allclose(got, expected[i:i + 1], rtol=1e-5, atol=1e-7):
                errors.append(i)

    threads = [threading.Thread(target=predict_rows, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_small_predicts_use_weights_set_after_the_buffers_were_made():
    net = Network({"layers": [{"units": 3, "activation": "tanh"},
                              {"units": 2, "activation": "identity"}], "loss": "squared_error"})
    net.predict(np.ones((1, 4)))                             # the buffers exist now
    other = Network(net.spec, n_inputs=4, seed=9)
    net.params = other.params
    np.testing.assert_allclose(net.predict(np.ones((1, 4))), other.predict(np.ones((1, 4))))
