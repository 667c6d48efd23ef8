import pytest
from pydantic import ValidationError

from engine import ACTIVATIONS, LOSSES, OPTIMIZERS, SCHEDULES, NetworkSpec, TrainingSpec
from engine_helpers import spec


def test_valid_spec_round_trips_through_json():
    s = NetworkSpec.model_validate(spec(init={"distribution": "uniform", "fan": "out"}))
    again = NetworkSpec.model_validate_json(s.model_dump_json())
    assert again == s
    assert again.init.distribution == "uniform" and again.init.fan == "out"


@pytest.mark.parametrize("field, bad, registry", [
    ("activation", "swish", ACTIVATIONS), ("loss", "hinge", LOSSES)])
def test_unknown_names_list_valid_ones_sorted(field, bad, registry):
    s = spec()
    if field == "activation":
        s["layers"][0]["activation"] = bad
    else:
        s["loss"] = bad
    with pytest.raises(ValidationError) as err:
        NetworkSpec.model_validate(s)
    assert bad in str(err.value)
    assert ", ".join(sorted(registry)) in str(err.value)


def test_unknown_optimizer_and_schedule_list_valid_ones():
    with pytest.raises(ValidationError, match=", ".join(sorted(OPTIMIZERS))):
        TrainingSpec.model_validate({"optimizer": "rmsprop"})
    with pytest.raises(ValidationError, match=", ".join(sorted(SCHEDULES))):
        TrainingSpec.model_validate({"schedule": {"name": "warmup"}})


def test_unknown_init_scheme_lists_valid_ones():
    with pytest.raises(ValidationError, match="he, xavier"):
        NetworkSpec.model_validate(spec(init={"scheme": "lecun"}))


def test_extra_fields_are_errors():
    with pytest.raises(ValidationError, match="extra"):
        NetworkSpec.model_validate(spec(dropout=0.5))
    with pytest.raises(ValidationError, match="extra"):
        TrainingSpec.model_validate({"epochs": 3, "lr": 0.1})


@pytest.mark.parametrize("s, message", [
    (spec(out="softmax", loss="squared_error"),
     "softmax output only pairs with loss 'cross_entropy'"),
    (spec(out="sigmoid", loss="cross_entropy"), "needs a 'softmax' output layer"),
    (spec(out="identity", loss="binary_cross_entropy", k=1), "needs a 'sigmoid' output layer"),
    (spec(hidden=("softmax",)), "layer 1 uses 'softmax'"),
    (spec(k=1), "at least 2 output units"),
])
def test_senseless_pairings_say_what_to_change(s, message):
    with pytest.raises(ValidationError, match=message):
        NetworkSpec.model_validate(s)


@pytest.mark.parametrize("training", [
    {"learning_rate": 0}, {"epochs": 0}, {"batch_size": 0}, {"momentum": 1.0},
    {"validation_split": 1.0}, {"weight_decay": -1}, {"early_stopping": {"patience": 0}},
])
def test_out_of_range_training_values(training):
    with pytest.raises(ValidationError):
        TrainingSpec.model_validate(training)


def test_training_defaults_and_full_batch():
    t = TrainingSpec()
    assert (t.optimizer, t.learning_rate, t.epochs, t.batch_size) == ("sgd", 0.01, 10, 32)
    assert not t.full_batch
    assert TrainingSpec(optimizer="gd").full_batch
    assert TrainingSpec(batch_size=None).full_batch


def test_early_stopping_on_val_loss_needs_a_split():
    with pytest.raises(ValidationError, match="validation_split"):
        TrainingSpec.model_validate({"early_stopping": {"patience": 2}})
    TrainingSpec.model_validate({"early_stopping": {"patience": 2, "monitor": "loss"}})


def test_schedule_rejects_parameters_it_does_not_use():
    with pytest.raises(ValidationError, match="does not use step_size"):
        TrainingSpec.model_validate({"schedule": {"name": "cosine", "step_size": 3}})
    t = TrainingSpec.model_validate({"schedule": {"name": "step", "step_size": 3, "gamma": 0.1}})
    assert t.schedule.step_size == 3


@pytest.mark.parametrize("sigma", [1e308, float("inf"), 1000.5])
def test_an_untrainable_init_sigma_is_a_spec_error_that_says_what_to_give(sigma):
    with pytest.raises(ValidationError) as err:
        NetworkSpec.model_validate(spec(init={"sigma": sigma}))
    message = str(err.value)
    assert message.startswith("1 validation error") and "init.sigma" in message
    assert "give a sigma in (0, 1000]" in message and "'he' or 'xavier'" in message
    assert NetworkSpec.model_validate(spec(init={"sigma": 1000})).init.sigma == 1000
