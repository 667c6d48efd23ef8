"""The JSON-friendly schema of a network and of a training run (pydantic v2).

The HTTP API reuses these models verbatim. Allowed names come from the registries, so the
docs, the validation and the engine can never disagree. Unknown fields are errors.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .activations import ACTIVATIONS, OUTPUT_ONLY
from .initializers import INIT_SCHEMES, INITS
from .losses import LOSSES
from .metrics import METRICS
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULE_PARAMS, SCHEDULES


def _one_of(kind: str, value: str, registry) -> str:
    if value not in registry:
        raise ValueError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(sorted(registry))}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayerSpec(_Model):
    """One layer: `units` outputs, each phi(w^T x + b)."""

    units: int = Field(ge=1)
    activation: str = Field(json_schema_extra={"enum": sorted(ACTIVATIONS)})

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return _one_of("activation", v, ACTIVATIONS)


MAX_INIT_SIGMA = 1000.0
"""The largest init sigma. The lecture's is 1 (He's sqrt 2). At sigma 1000, z^(1) of unit-scale
inputs already has a standard deviation of 1000: every sigmoid and tanh unit is saturated
(phi' underflows to 0, so nothing trains) and each ReLU layer multiplies activations by about
1000, overflowing float32 (3.4e38) within 13 layers. Larger values can only fail later, in the
worker; sigma 1e308 overflows the weights themselves."""


class InitSpec(_Model):
    """W_ij ~ distribution with variance sigma^2/m (m = fan-in or fan-out), or a scheme's."""

    distribution: str = Field(default="normal", json_schema_extra={"enum": sorted(INITS)})
    sigma: float = Field(default=1.0, gt=0, json_schema_extra={"maximum": MAX_INIT_SIGMA})
    fan: Literal["in", "out"] = "in"
    scheme: str | None = Field(default=None,
                               json_schema_extra={"enum": [*sorted(INIT_SCHEMES), None]})

    @field_validator("distribution")
    @classmethod
    def _known_distribution(cls, v: str) -> str:
        return _one_of("distribution", v, INITS)

    @field_validator("sigma")
    @classmethod
    def _trainable_sigma(cls, v: float) -> float:
        if not v <= MAX_INIT_SIGMA:                         # NaN and inf fail here too
            raise ValueError(f"sigma {v:g} is too large to train: give a sigma in (0, "
                             f"{MAX_INIT_SIGMA:g}], such as 1 (the lecture's init), or a scheme "
                             "('he' or 'xavier') instead")
        return v

    @field_validator("scheme")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        return v if v is None else _one_of("scheme", v, INIT_SCHEMES)


class NetworkSpec(_Model):
    """Layers from the first hidden one to the output; the input width comes from the data."""

    layers: list[LayerSpec] = Field(min_length=1)
    loss: str = Field(json_schema_extra={"enum": sorted(LOSSES)})
    init: InitSpec = Field(default_factory=InitSpec)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        return _one_of("loss", v, LOSSES)

    @model_validator(mode="after")
    def _sensible_pairing(self) -> NetworkSpec:
        for i, layer in enumerate(self.layers[:-1], start=1):
            if layer.activation in OUTPUT_ONLY:
                raise ValueError(
                    f"layer {i} uses {layer.activation!r}, which is only allowed on the output "
                    "layer; pick a hidden activation such as 'relu' or 'tanh'")
        out = self.layers[-1].activation
        fused = LOSSES[self.loss].fused_activation
        if fused and out != fused:
            raise ValueError(
                f"loss {self.loss!r} needs a {fused!r} output layer, but the last layer uses "
                f"{out!r}; set its activation to {fused!r}")
        if out == "softmax" and self.loss != "cross_entropy":
            raise ValueError(
                f"a softmax output only pairs with loss 'cross_entropy', not {self.loss!r}; "
                "use 'cross_entropy', or an elementwise output such as 'sigmoid' or 'identity'")
        if self.loss == "cross_entropy" and self.layers[-1].units < 2:
            raise ValueError("cross_entropy needs at least 2 output units (one per class); for "
                             "two classes with one unit use sigmoid + binary_cross_entropy")
        return self


class ScheduleSpec(_Model):
    """A learning-rate schedule; see schedules.py for the formulas."""

    name: str = Field(default="constant", json_schema_extra={"enum": sorted(SCHEDULES)})
    step_size: int = Field(default=10, ge=1)
    gamma: float = Field(default=0.5, gt=0, le=1)
    t_max: int | None = Field(default=None, ge=1)
    min_lr: float = Field(default=0.0, ge=0)

    @field_validator("name")
    @classmethod
    def _known_schedule(cls, v: str) -> str:
        return _one_of("schedule", v, SCHEDULES)

    @model_validator(mode="after")
    def _only_its_params(self) -> ScheduleSpec:
        # A parameter the schedule ignores may appear with its default (model_dump writes
        # them all), but a different value means the user expects an effect it cannot have.
        fields = type(self).model_fields
        extra = {f for f in fields if f != "name" and f not in SCHEDULE_PARAMS[self.name]
                 and getattr(self, f) != fields[f].default}
        if extra:
            allowed = ", ".join(sorted(SCHEDULE_PARAMS[self.name])) or "none"
            raise ValueError(f"schedule {self.name!r} does not use {', '.join(sorted(extra))}; "
                             f"its parameters: {allowed}")
        return self


class EarlyStoppingSpec(_Model):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs.
    `val_metric` / `metric` watch training.metric (each in its own direction: accuracy up,
    rmse down); with training.metric set, an unset monitor is `val_metric`."""

    patience: int = Field(default=5, ge=1)
    min_delta: float = Field(default=0.0, ge=0)
    restore_best: bool = True
    monitor: Literal["val_loss", "loss", "val_metric", "metric"] = "val_loss"


class TrainingSpec(_Model):
    """How to train. optimizer 'gd' is full-batch gradient descent and ignores batch_size."""

    optimizer: str = Field(default="sgd", json_schema_extra={"enum": sorted(OPTIMIZERS)})
    learning_rate: float = Field(default=0.01, gt=0)
    epochs: int = Field(default=10, ge=1)
    batch_size: int | None = Field(default=32, ge=1)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.999, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    validation_split: float = Field(default=0.0, ge=0, lt=1)
    test_split: float = Field(
        default=0.0, ge=0, lt=1, description="rows held out of training and early stopping "
        "alike (drawn before the validation split); their metrics are stored with the model")
    early_stopping: EarlyStoppingSpec | None = None
    metric: str | None = Field(
        default=None, json_schema_extra={"enum": [*sorted(METRICS), None]},
        description="the metric reported in each epoch (and watched by early stopping); "
                    "default accuracy for classifiers, r2 for regression")
    class_weight: Literal["balanced"] | dict[str, float] | None = Field(
        default=None, description="\"balanced\" (weights inversely proportional to class "
        "frequency) or {class: weight}, unlisted classes 1; softmax classifiers only")
    shuffle: bool = True
    seed: int | None = None

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, v: str) -> str:
        return _one_of("optimizer", v, OPTIMIZERS)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        return v if v is None else _one_of("metric", v, METRICS)

    @field_validator("class_weight")
    @classmethod
    def _positive_weights(cls, v):
        if isinstance(v, dict):
            for key, weight in v.items():
                if not weight > 0 or weight == float("inf"):
                    raise ValueError(f"class_weight[{key!r}] is {weight}; weights must be "
                                     f"finite and > 0")
        return v

    @model_validator(mode="after")
    def _monitor_has_data(self) -> TrainingSpec:
        es = self.early_stopping
        if es is not None and self.metric is not None and "monitor" not in es.model_fields_set:
            es.monitor = "val_metric" if self.validation_split else "metric"
        if es is not None and es.monitor.startswith("val_") and self.validation_split == 0:
            raise ValueError(f"early_stopping monitors {es.monitor!r} but validation_split is "
                             f"0; set validation_split (e.g. 0.1) or early_stopping.monitor "
                             f"{es.monitor[4:]!r}")
        return self

    @property
    def full_batch(self) -> bool:
        return self.optimizer == "gd" or self.batch_size is None


def as_network_spec(spec) -> NetworkSpec:
    return spec if isinstance(spec, NetworkSpec) else NetworkSpec.model_validate(spec)


def as_training_spec(training) -> TrainingSpec:
    if training is None:
        return TrainingSpec()
    if isinstance(training, TrainingSpec):
        return training
    return TrainingSpec.model_validate(training)
