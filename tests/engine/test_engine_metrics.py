"""Metrics and scores against scikit-learn's; the kept epoch; training.metric; class weights;
the default network and training."""
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.linear_model import LinearRegression

from engine import Network, TrainingSpec
from engine import scores
from engine.defaults import default_network, default_training
from engine.importance import permutation_importance
from engine.metrics import METRICS
from engine_helpers import make_classification, make_regression, spec


def _proba(n, k, seed):
    p = np.random.default_rng(seed).random((n, k)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_classification_report_matches_scikit_learn(k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 200)
    proba = _proba(200, k, k + 1)
    proba[:3] = 1.0 / k                                           # ties in the argmax and AUC
    labels = [f"c{i}" for i in range(k)]
    report = scores.classification_report(y, proba, labels)
    m, predicted = report["metrics"], proba.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=list(range(k))))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    precision = skm.precision_score(y, predicted, average=None, labels=list(range(k)),
                                    zero_division=0)
    recall = skm.recall_score(y, predicted, average=None, labels=list(range(k)),
                              zero_division=0)
    assert [m["precision"][c] for c in labels] == pytest.approx(precision)
    assert [m["recall"][c] for c in labels] == pytest.approx(recall)
    assert report["confusion_matrix"] == {
        "labels": labels, "counts": skm.confusion_matrix(y, predicted,
                                                         labels=list(range(k))).tolist()}
    if k == 2:
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    else:
        assert "roc_auc" not in m


def test_roc_auc_counts_ties_half_and_needs_both_classes():
    assert scores.roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5
    assert scores.roc_auc(np.array([True, True]), np.array([0.1, 0.9])) is None


@pytest.mark.parametrize("k", [1, 3])
def test_regression_report_matches_scikit_learn(k):
    rng = np.random.default_rng(k)
    y = rng.normal(10, 3, (150, k)).squeeze()
    pred = y + rng.normal(0, 1, y.shape)
    m = scores.regression_report(y, pred)["metrics"]
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))


def test_epoch_metrics_equal_the_scores_of_the_weights_after_each_epoch():
    X, y = make_classification(n=200)
    for name in ("accuracy", "log_loss", "f1_macro"):
        net = Network(spec(units=12), seed=1)
        after = {}
        history = net.fit(X, y, {"optimizer": "adam", "learning_rate": 0.01, "epochs": 3,
                                 "validation_split": 0.25, "metric": name, "seed": 2},
                          on_epoch=lambda r: after.setdefault(r["epoch"], net.predict(X)))
        val = net.run.val_idx
        for record in history:
            assert record["metric_name"] == name
            expected = scores.SCORES[name](y[val], after[record["epoch"]][val])
            assert record["val_metric"] == pytest.approx(expected, rel=1e-5)


def test_regression_history_has_rmse_and_mae_in_the_targets_units():
    X, Y = make_regression(k=1)
    y = Y[:, 0] * 50 + 300                                       # a target far from unit scale
    mean, scale = y.mean(), y.std()
    net = Network(spec(out="identity", loss="squared_error", k=1, units=10), seed=0)
    history = net.fit(X, (y - mean) / scale, {"optimizer": "adam", "learning_rate": 0.01,
                                              "epochs": 5, "validation_split": 0.3},
                      target_scale=np.array([scale]))
    val = net.run.val_idx
    pred = net.predict(X)[:, 0] * scale + mean
    last = history[-1]
    assert last["metric_name"] == "r2"
    assert last["val_rmse"] == pytest.approx(scores.rmse(y[val], pred[val]), rel=1e-4)
    assert last["val_mae"] == pytest.approx(scores.mae(y[val], pred[val]), rel=1e-4)
    assert last["val_metric"] == pytest.approx(scores.r2(y[val], pred[val]), rel=1e-4)
    assert last["rmse"] > 1                                      # units, not standardized


def test_kept_epoch_is_the_best_and_its_record_describes_the_net():
    X, y = make_classification(n=200)
    net = Network(spec(units=16), seed=0)
    history = net.fit(X, y, {"optimizer": "adam", "learning_rate": 0.05, "epochs": 200,
                             "batch_size": 8, "validation_split": 0.3,
                             "early_stopping": {"patience": 3}})
    assert net.stopped_early and net.kept_epoch < len(history)
    kept = history[net.kept_epoch - 1]
    assert kept["val_loss"] == min(r["val_loss"] for r in history)
    val = net.run.val_idx
    assert kept["val_metric"] == pytest.approx(scores.accuracy(y[val], net.predict(X[val])))


def test_best_weights_are_kept_at_the_epoch_cap_too():
    X, y = make_classification(n=200)
    net = Network(spec(units=16), seed=0)
    history = net.fit(X, y, {"optimizer": "adam", "learning_rate": 0.05, "epochs": 25,
                             "batch_size": 8, "validation_split": 0.3,
                             "early_stopping": {"patience": 100}})
    assert not net.stopped_early and len(history) == 25
    best = int(np.argmin([r["val_loss"] for r in history])) + 1
    assert net.kept_epoch == best
    val = net.run.val_idx
    assert history[best - 1]["val_metric"] == pytest.approx(
        scores.accuracy(y[val], net.predict(X[val])))


def test_kept_epoch_survives_a_save_and_load():
    X, y = make_classification(n=100)
    net = Network(spec(), seed=0)
    net.fit(X, y, {"epochs": 3})
    assert Network.from_bytes(net.save_bytes()).kept_epoch == net.kept_epoch == 3


def test_early_stopping_watches_the_metric_in_its_direction():
    X, y = make_classification(n=200)
    net = Network(spec(units=16), seed=0)
    history = net.fit(X, y, {"optimizer": "adam", "learning_rate": 0.05, "epochs": 200,
                             "batch_size": 8, "validation_split": 0.3, "metric": "f1_macro",
                             "early_stopping": {"patience": 4}})
    training = TrainingSpec.model_validate({"metric": "f1_macro", "validation_split": 0.3,
                                            "early_stopping": {}})
    assert training.early_stopping.monitor == "val_metric"
    f1 = [r["val_metric"] for r in history]
    assert net.stopped_early and net.kept_epoch == f1.index(max(f1)) + 1


def test_metric_names_come_from_the_registry_and_must_suit_the_loss():
    with pytest.raises(ValidationError, match="valid metrics: accuracy, f1_macro, log_loss, mae"):
        TrainingSpec.model_validate({"metric": "auc"})
    X, Y = make_regression()
    net = Network(spec(out="identity", loss="squared_error", k=2))
    with pytest.raises(ValueError, match="use one of mae, r2, rmse"):
        net.fit(X, Y, {"metric": "accuracy", "epochs": 1})
    assert set(METRICS) == {"accuracy", "log_loss", "f1_macro", "r2", "rmse", "mae"}


def test_balanced_class_weights_raise_recall_of_a_rare_class():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] + 0.8 * rng.normal(size=400) > 1.6).astype(int)  # about 10% positive
    recalls = {}
    for weights in (None, "balanced", {"1": 9.0}):
        net = Network(spec(units=8, k=2), seed=0)
        net.fit(X, y, {"optimizer": "adam", "learning_rate": 0.02, "epochs": 30,
                       "class_weight": weights, "seed": 0})
        predicted = net.predict(X).argmax(axis=1)
        recalls[str(weights)] = (predicted[y == 1] == 1).mean()
    assert recalls["balanced"] > recalls["None"] + 0.1
    assert recalls["{'1': 9.0}"] > recalls["None"] + 0.1
    with pytest.raises(ValueError, match="not an output unit"):
        Network(spec(units=8, k=2)).fit(X, y, {"class_weight": {"7": 2.0}})


def test_permutation_importance_matches_scikit_learn_on_a_linear_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = 3 * X[:, 0] + 0.5 * X[:, 1]

    model = LinearRegression().fit(X, y)
    ours = permutation_importance(model.predict, X, y, [("a", [0]), ("b", [1]), ("c", [2])],
                                  scores.SCORES["r2"], True, seed=0, repeats=20)
    theirs = sk_permutation_importance(model, X, y, scoring="r2", n_repeats=20,
                                       random_state=0).importances_mean
    assert [f["column"] for f in ours] == ["a", "b", "c"]
    assert [f["importance"] for f in ours] == pytest.approx(theirs, abs=0.15)
    assert abs(ours[2]["importance"]) < 1e-6 and ours[0]["importance"] > ours[1]["importance"] > 0


def test_defaults_fit_the_data():
    small = default_network("classification", 500, 3)
    assert [layer.units for layer in small.layers] == [100, 3]
    assert (small.layers[-1].activation, small.loss) == ("softmax", "cross_entropy")
    big = default_network("regression", 50_000, 2)
    assert [layer.units for layer in big.layers] == [200, 200, 2]
    assert (big.layers[-1].activation, big.loss) == ("identity", "squared_error")
    training = default_training(500)
    assert training.optimizer == "adam" and training.validation_split > 0
    assert training.early_stopping.restore_best and training.early_stopping.monitor == "val_loss"
    tiny = default_training(4)                                    # no row to spare
    assert tiny.validation_split == 0 and tiny.early_stopping.monitor == "loss"
