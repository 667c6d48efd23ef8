"""What a job gets when it leaves out its network or its training: a sensible model for its
data, in the spirit of scikit-learn's MLP (one hidden ReLU layer of 100, Adam) and
H2O-3's deep learning (two hidden layers of 200 for larger data), with a validation split,
early stopping on it and the best weights kept.

    default_network(task, n_rows, n_outputs)   task: classification, multilabel or regression
    default_training(n_rows)
"""
from __future__ import annotations

from .spec import NetworkSpec, TrainingSpec
from .split import check_split

LARGE_ROWS = 10_000
"""From this many rows on, two hidden layers of LARGE_UNITS; below, one of SMALL_UNITS."""
SMALL_UNITS = 100
LARGE_UNITS = 200

OUTPUTS = {
    "classification": ("softmax", "cross_entropy"),
    "multilabel": ("sigmoid", "binary_cross_entropy"),
    "regression": ("identity", "squared_error"),
}
"""The output layer and loss of each task."""

EPOCHS = 200
"""The epoch cap (scikit-learn's max_iter); early stopping usually ends training sooner."""
LEARNING_RATE = 5e-3
"""Above scikit-learn's 1e-3: our batches of 32 against its 200 make more, noisier steps,
and early stopping guards against overshooting; measured on wine, iris and diabetes."""
PATIENCE = 20
VALIDATION_SPLIT = 0.1
BATCH_SIZE = 32
LARGE_BATCH_SIZE = 128


def default_network(task: str, n_rows: int, n_outputs: int) -> NetworkSpec:
    """Hidden ReLU layers chosen from the data's size (He initialisation), and the output
    layer and loss of the task with n_outputs units."""
    hidden = [LARGE_UNITS, LARGE_UNITS] if n_rows >= LARGE_ROWS else [SMALL_UNITS]
    activation, loss = OUTPUTS[task]
    return NetworkSpec(
        layers=[*({"units": units, "activation": "relu"} for units in hidden),
                {"units": n_outputs, "activation": activation}],
        loss=loss, init={"scheme": "he"})


def default_training(n_rows: int) -> TrainingSpec:
    """Adam, shuffled minibatches, VALIDATION_SPLIT of the rows held out for early stopping
    (patience PATIENCE, best weights restored), at most EPOCHS epochs. Data too small for a
    validation row stop on the training loss instead."""
    split = VALIDATION_SPLIT
    try:
        check_split(n_rows, split)
    except ValueError:
        split = 0.0
    return TrainingSpec(
        optimizer="adam", learning_rate=LEARNING_RATE, epochs=EPOCHS,
        batch_size=LARGE_BATCH_SIZE if n_rows >= LARGE_ROWS else BATCH_SIZE,
        validation_split=split,
        early_stopping={"patience": PATIENCE, "restore_best": True,
                        "monitor": "val_loss" if split else "loss"})
