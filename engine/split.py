"""The validation split: which rows fit holds out, as a pure function of the row count, the
fraction and a seed, so that callers (the worker fitting table preparation on the training
rows only; the API checking a job at submit) use the very rows fit will use."""
from __future__ import annotations

import numpy as np

SPLIT_SEED_SALT = 0x5B1D
"""Mixed into the seed for the validation split, so it never consumes the shuffling RNG."""


def check_split(n_rows: int, validation_split: float) -> tuple[int, int]:
    """(training rows, validation rows) that split_rows gives for n_rows rows, without data.

    Raises ValueError, naming the fix, when a non-zero split leaves no training or no
    validation row."""
    n_val = int(round(n_rows * validation_split))
    if validation_split and not 0 < n_val < n_rows:
        raise ValueError(f"validation_split {validation_split} of {n_rows} rows leaves "
                         f"{n_val} validation and {n_rows - n_val} training rows; both need at "
                         "least one: use more data or another split")
    return n_rows - n_val, n_val


def split_rows(n_rows: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of n_rows rows: sorted int64 index arrays (n_train,)
    and (n_val,), sizes as check_split says (which raises for a split that leaves either empty).

    Network.fit draws its split with this function, once, and keeps it on resume. The seed fit
    passes is the training spec's `seed` when it is set, else the Network's `seed`; give the
    same to get fit's rows."""
    n_train, n_val = check_split(n_rows, validation_split)
    if n_val == 0:
        return np.arange(n_rows, dtype=np.int64), np.arange(0, dtype=np.int64)
    rng = np.random.default_rng([seed, SPLIT_SEED_SALT])
    val_idx = np.sort(rng.permutation(n_rows)[:n_val]).astype(np.int64, copy=False)
    return rows_outside(n_rows, val_idx), val_idx


def rows_outside(n_rows: int, val_idx: np.ndarray) -> np.ndarray:
    """The sorted rows of range(n_rows) not in val_idx: the training rows of a split."""
    mask = np.ones(n_rows, bool)
    mask[val_idx] = False
    return np.flatnonzero(mask)


TEST_SEED_SALT = 0x7E57
"""Mixed into the seed for the test split, so it differs from the validation split's draw."""


def test_split_rows(n_rows: int, test_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, test rows) of n_rows rows for a job's `test_split`: sorted int64 index
    arrays, the test rows drawn before (and apart from) the validation split, which is then
    drawn among the kept rows. ValueError, as check_split, when either part would be empty."""
    n_kept, n_test = check_split(n_rows, test_split)
    if n_test == 0:
        return np.arange(n_rows, dtype=np.int64), np.arange(0, dtype=np.int64)
    rng = np.random.default_rng([seed, TEST_SEED_SALT])
    test_idx = np.sort(rng.permutation(n_rows)[:n_test]).astype(np.int64, copy=False)
    return rows_outside(n_rows, test_idx), test_idx
