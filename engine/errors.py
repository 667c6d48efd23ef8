"""Exceptions the engine raises on purpose; every message says what the user should change."""
from __future__ import annotations


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite.

    Attributes:
        epoch: 1-based epoch in which the loss stopped being finite.
        layer: 1-based index of the layer with the largest gradient norm at that moment.
    """

    def __init__(self, message: str, *, epoch: int, layer: int):
        super().__init__(message)
        self.epoch = epoch
        self.layer = layer


class DeviceUnavailable(ValueError):
    """device="gpu" was asked for, but CuPy or a CUDA GPU is missing."""
