"""Learning-rate schedules: the rate for a 0-based epoch, from the base rate and the spec.

    constant      lr
    step          lr * gamma ** (epoch // step_size)
    exponential   lr * gamma ** epoch
    cosine        min_lr + (lr - min_lr) (1 + cos(pi * epoch / t_max)) / 2,  t_max = epochs
"""
from __future__ import annotations

import math


def _constant(lr: float, epoch: int, spec, epochs: int) -> float:
    return lr


def _step(lr: float, epoch: int, spec, epochs: int) -> float:
    return lr * spec.gamma ** (epoch // spec.step_size)


def _exponential(lr: float, epoch: int, spec, epochs: int) -> float:
    return lr * spec.gamma**epoch


def _cosine(lr: float, epoch: int, spec, epochs: int) -> float:
    t_max = spec.t_max or epochs
    progress = min(epoch, t_max) / t_max
    return spec.min_lr + (lr - spec.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES = {"constant": _constant, "step": _step, "exponential": _exponential,
             "cosine": _cosine}
"""Every schedule by name: (base lr, 0-based epoch, ScheduleSpec, total epochs) -> lr."""

SCHEDULE_PARAMS = {"constant": set(), "step": {"step_size", "gamma"},
                   "exponential": {"gamma"}, "cosine": {"t_max", "min_lr"}}
"""The parameters each schedule reads; setting any other one is an error."""


def learning_rate(training, epoch: int) -> float:
    """The learning rate for 0-based `epoch` under `training` (a TrainingSpec)."""
    sched = training.schedule
    return SCHEDULES[sched.name](training.learning_rate, epoch, sched, training.epochs)
