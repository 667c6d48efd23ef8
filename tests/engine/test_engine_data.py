import numpy as np
import pytest

from engine import check_data
from engine_helpers import spec

CE = spec()
BCE = spec(out="sigmoid", loss="binary_cross_entropy", k=2)
REG = spec(out="identity", loss="squared_error", k=2)
X = np.zeros((4, 3))


@pytest.mark.parametrize("s, X_, Y, message", [
    (CE, np.zeros(3), np.zeros(3), "2-D array"),
    (CE, np.zeros((0, 3)), np.zeros(0), "empty"),
    (CE, np.array([[1.0, np.nan, 0], [0, 0, 0]]), np.array([0, 1]), "NaN or infinite"),
    (CE, X, np.array([0, 1, 2]), "4 rows but Y has 3"),
    (CE, X, np.array([0, 1, 2, 3]), r"labels must lie in \[0, 3\)"),
    (CE, X, np.array([0, 1, -1, 2]), r"labels must lie in \[0, 3\)"),
    (CE, X, np.array([0, 1.5, 1, 2]), "non-integer"),
    (CE, X, np.eye(4), "4 columns but the output layer has 3"),
    (CE, X, np.full((4, 3), 0.5), "one-hot"),
    (BCE, X, np.array([[0, 1], [1, 0], [2, 0], [0, 0]]), "0 or 1"),
    (BCE, X, np.array([0, 1, 1, 0]), "pass Y of shape"),
    (REG, X, np.zeros((4, 3)), "3 columns but the output layer has 2"),
    (REG, X, np.zeros((4, 2, 1)), "1-D or 2-D"),
    (REG, X, np.array([[0, np.inf]] * 4), "Y contains NaN"),
    (CE, np.array([["a", "b", "c"]] * 4), np.zeros(4), "numbers"),
])
def test_misfit_data_is_explained(s, X_, Y, message):
    with pytest.raises(ValueError, match=message):
        check_data(s, X_, Y)


def test_input_width_is_checked_when_known():
    with pytest.raises(ValueError, match="network takes 5 inputs"):
        check_data(CE, X, np.array([0, 1, 2, 0]), n_inputs=5)


@pytest.mark.parametrize("s, Y", [
    (CE, np.array([0, 1, 2, 0])), (CE, np.eye(3)[[0, 1, 2, 0]]),
    (BCE, np.array([[0, 1], [1, 0], [1, 1], [0, 0]])), (REG, np.ones((4, 2))),
    (spec(out="identity", loss="huber", k=1), np.arange(4.0)),
    (spec(out="sigmoid", loss="binary_cross_entropy", k=1), np.array([True, False, True, True])),
])
def test_fitting_data_passes(s, Y):
    check_data(s, X, Y)
