"""The validation split as a pure function: split_rows gives exactly the rows fit uses."""
import numpy as np
import pytest

from engine import Network, check_split, split_rows
from engine_helpers import make_classification, spec


@pytest.mark.parametrize("training_seed", [None, 11])
def test_split_rows_gives_exactly_fits_rows(training_seed):
    X, y = make_classification(n=150)
    net = Network(spec(), seed=4)
    training = {"epochs": 1, "validation_split": 0.3, "seed": training_seed}
    net.fit(X, y, training)
    seed = training_seed if training_seed is not None else net.seed
    train_idx, val_idx = split_rows(len(X), 0.3, seed)
    np.testing.assert_array_equal(net.state()["val_idx"], val_idx)
    other_seed = split_rows(len(X), 0.3, seed + 1)[1]
    assert not np.array_equal(other_seed, val_idx)
    # Training on the training rows alone, without a split, from the same seeds, gives the
    # same batches (the shuffle permutes positions alike) and so the same losses: fit trained
    # on exactly those rows.
    alone = Network(spec(), seed=4).fit(X[train_idx], y[train_idx],
                                        {"epochs": 3, "seed": training_seed})
    split = Network(spec(), seed=4).fit(X, y, {**training, "epochs": 3})
    assert [r["loss"] for r in alone] == [r["loss"] for r in split]


def test_split_rows_is_a_sorted_partition_of_every_row():
    train_idx, val_idx = split_rows(1000, 0.25, 3)
    assert train_idx.dtype == val_idx.dtype == np.int64
    assert len(val_idx) == 250 and len(train_idx) == 750
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(1000))
    no_split = split_rows(7, 0.0, 3)
    np.testing.assert_array_equal(no_split[0], np.arange(7))
    assert len(no_split[1]) == 0


@pytest.mark.parametrize("n_rows, fraction", [(4, 0.05), (4, 0.9), (1, 0.5)])
def test_a_split_that_leaves_a_side_empty_is_refused_without_data(n_rows, fraction):
    with pytest.raises(ValueError, match="both need at least one: use more data or another "
                                         "split"):
        check_split(n_rows, fraction)
    with pytest.raises(ValueError, match=f"validation_split {fraction} of {n_rows} rows"):
        split_rows(n_rows, fraction, 0)


def test_check_split_counts_what_split_rows_draws():
    for n_rows, fraction in [(10, 0.1), (101, 0.33), (5, 0.5), (3, 0.0)]:
        n_train, n_val = check_split(n_rows, fraction)
        train_idx, val_idx = split_rows(n_rows, fraction, 0)
        assert (n_train, n_val) == (len(train_idx), len(val_idx))
