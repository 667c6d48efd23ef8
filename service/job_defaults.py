"""A job's left-out parts filled in from its data (engine.defaults), before any check, so that
the job record shows the spec it trains with, every default resolved; and the checks of the
training options that depend on the data (test split, metric, class weights)."""

from __future__ import annotations

import engine
from core.dataset_schema import DatasetSchema
from engine.defaults import default_network, default_training
from engine.metrics import check_metric
from service.errors import ApiError
from service.schemas import JobIn

MAX_DEFAULT_CLASSES = 20
"""A whole-number target with at most this many distinct values is taken for classes when the
job leaves out its network (more: a count or an amount, trained as regression). Send a
network to decide otherwise."""


def default_task(schema: DatasetSchema, mode: str) -> tuple[str, int]:
    """(task, output units) the target calls for: text classes or few whole numbers are
    classes; anything else is regression over its columns. Under preprocessing "none" the
    classes must already be the labels 0..k-1 (nothing maps them to output units)."""
    target = schema.target
    classes = target.classes
    if target.kind == "categorical":
        return "classification", len(classes)
    if len(target.names) == 1 and classes is not None and 2 <= len(classes) <= \
            MAX_DEFAULT_CLASSES and (mode == "auto" or classes == list(range(len(classes)))):
        return "classification", len(classes)
    return "regression", len(target.names)


def resolved(job: JobIn, schema: DatasetSchema, n_samples: int) -> JobIn:
    """job with a default network and training where it left them out."""
    update = {}
    if job.network is None:
        task, units = default_task(schema, job.preprocessing.mode)
        update["network"] = default_network(task, n_samples, units)
    if job.training is None:
        update["training"] = default_training(n_samples).model_copy(
            update={"seed": job.seed})
    return job.model_copy(update=update) if update else job


def check_training_options(job: JobIn, schema: DatasetSchema, n_samples: int) -> None:
    """422, naming the field and the fix, for a test split that leaves no rows, a metric
    that does not suit the loss, or class weights naming classes the target lacks."""
    training = job.training
    try:
        kept, _ = engine.check_split(n_samples, training.test_split)
    except ValueError as exc:
        raise ApiError(422, f"training.test_split: {exc}", "training.test_split") from None
    try:
        engine.check_split(kept, training.validation_split)
    except ValueError as exc:
        raise ApiError(422, f"training.validation_split: {exc} (after the test split)",
                       "training.validation_split") from None
    try:
        check_metric(training.metric, engine.LOSSES[job.network.loss])
    except ValueError as exc:
        raise ApiError(422, f"training.metric: {exc}", "training.metric") from None
    weights = training.class_weight
    if weights is None:
        return
    if job.network.loss != "cross_entropy":
        raise ApiError(422, "training.class_weight: class weights need a classifier (softmax "
                            "+ cross_entropy); leave them out for this network",
                       "training.class_weight")
    if isinstance(weights, dict):
        mapped = job.preprocessing.mode == "auto" and schema.target.classes is not None
        classes = ([str(c) for c in schema.target.classes] if mapped else
                   [str(i) for i in range(job.network.layers[-1].units)])
        unknown = sorted(set(weights) - set(classes))
        if unknown:
            raise ApiError(422, f"training.class_weight: {unknown} are not classes of the "
                                f"target; its classes are {classes}", "training.class_weight")
