"""A sweep's trials as the jobs they will be (service.sweep_submission._trial_job): pure, no
store. A base that leaves out network or training is the default job, and the space's paths
reach into the defaults."""

from __future__ import annotations

import numpy as np
import pytest

from core.dataset_schema import arrays_schema
from engine.defaults import EPOCHS, LEARNING_RATE, PATIENCE, SMALL_UNITS
from service.errors import ApiError
from service.sweep_submission import DEFAULT_VALIDATION_SPLIT, SweepIn, _trial_job

ROWS = 300
X = np.random.default_rng(0).normal(size=(ROWS, 4))
CLASSES = arrays_schema(X, np.arange(ROWS) % 3, 20)
NUMBERS = arrays_schema(X, X[:, 0] * 2.5, 20)


def trial(space: dict, params: dict, base: dict | None = None, schema=CLASSES,
          metric: str = "val_metric", max_epochs: int | None = None):
    body = SweepIn(dataset_id="ds_x", base=base or {}, space=space)
    return _trial_job(body, 0, params, metric, schema, ROWS, max_epochs)


def test_an_empty_base_is_the_default_job_with_the_params_set_on_it():
    job = trial({"training.learning_rate": [0.01], "network.layers.0.units": [32],
                 "network.layers.0.activation": ["tanh"]},
                {"training.learning_rate": 0.01, "network.layers.0.units": 32,
                 "network.layers.0.activation": "tanh"})
    assert [(layer.units, layer.activation) for layer in job.network.layers] == [
        (32, "tanh"), (3, "softmax")]
    assert job.network.loss == "cross_entropy" and job.network.init.scheme == "he"
    training = job.training
    assert (training.optimizer, training.learning_rate, training.epochs) == ("adam", 0.01,
                                                                             EPOCHS)
    assert training.early_stopping.patience == PATIENCE
    assert training.early_stopping.monitor == "val_loss" and training.early_stopping.restore_best
    assert training.validation_split == DEFAULT_VALIDATION_SPLIT


def test_params_on_one_part_leave_the_other_part_default():
    job = trial({"training.weight_decay": [0.001]}, {"training.weight_decay": 0.001},
                schema=NUMBERS, max_epochs=30)
    assert [layer.units for layer in job.network.layers] == [SMALL_UNITS, 1]
    assert job.network.loss == "squared_error"
    assert job.training.weight_decay == 0.001 and job.training.optimizer == "adam"
    assert job.training.learning_rate == LEARNING_RATE and job.training.epochs == 30
    net = trial({"network.layers.0.units": [8]}, {"network.layers.0.units": 8})
    assert net.training.optimizer == "adam" and net.network.layers[0].units == 8


def test_a_base_training_keeps_its_own_fields_and_a_set_validation_split_stays():
    job = trial({"training.learning_rate": [0.1]}, {"training.learning_rate": 0.1},
                base={"training": {"optimizer": "sgd", "validation_split": 0.3}})
    assert job.training.optimizer == "sgd" and job.training.early_stopping is None
    assert job.training.validation_split == 0.3
    assert job.network.layers[0].units == SMALL_UNITS      # network still the default
    by_space = trial({"training.validation_split": [0.25]}, {"training.validation_split": 0.25})
    assert by_space.training.validation_split == 0.25
    on_loss = trial({"training.learning_rate": [0.1]}, {"training.learning_rate": 0.1},
                    metric="loss")
    assert on_loss.training.validation_split == 0.1        # the default job's own


def test_a_path_into_the_default_network_that_does_not_exist_is_a_422_naming_it():
    with pytest.raises(ApiError) as caught:
        trial({"network.layers.5.units": [4]}, {"network.layers.5.units": 4})
    assert caught.value.status == 422 and caught.value.field == "space.network.layers.5.units"
