"""What a job learns about its model besides training it: the scores on its test rows (a job's
`test_split`) and permutation feature importance per raw column, stored with the model; and
the two things fit needs from the data's preparation (class weights by output unit, the
regression target's scale for rmse and mae in its units).
"""
from __future__ import annotations

import numpy as np

from core.dataset_schema import DatasetSchema
from core.training_data import check_job_data, prepared_targets, task_of
import engine
from engine import scores
from engine.importance import permutation_importance
from engine.metrics import check_metric
from engine.preparation import ClassTarget, Preparation, PreparationSpec, ScaledTarget, recode

IMPORTANCE_ROWS = 5000
"""Most rows permutation importance scores on (a random subset beyond): enough to rank
columns, while each of its columns x repeats forward passes stays quick."""


class Assessment:
    """Held-out scoring of one job's model. held_out: the test rows' raw (numeric, codes, y)
    blocks, or None without a test split; X, Y: the rows fit trains and validates on."""

    def __init__(self, schema: DatasetSchema, spec: engine.NetworkSpec, prep: PreparationSpec,
                 dtype: str, preparation: Preparation | None, training: engine.TrainingSpec,
                 X: np.ndarray, Y: np.ndarray, held_out: tuple | None):
        self.schema, self.spec, self.prep, self.dtype = schema, spec, prep, dtype
        self.preparation, self.training, self.X, self.Y = preparation, training, X, Y
        self.held_out = held_out
        self.task = task_of(spec)
        target = preparation.target if preparation is not None else None
        self.classes = (list(target.classes) if isinstance(target, ClassTarget)
                        else list(range(spec.layers[-1].units)))
        self.scaled = target if isinstance(target, ScaledTarget) else None

    # -- what fit needs ----------------------------------------------------------------------
    @property
    def target_scale(self) -> np.ndarray | None:
        return None if self.scaled is None else np.asarray(self.scaled.scale)

    def engine_training(self, training: engine.TrainingSpec) -> engine.TrainingSpec:
        """training with class_weight keyed by output unit, as the engine takes it (the job
        names classes by their values: "Adelie", or "1" for a numeric class)."""
        weights = training.class_weight
        if not isinstance(weights, dict):
            return training
        units = {str(c): i for i, c in enumerate(self.classes)}
        unknown = sorted(set(weights) - set(units))
        if unknown:
            raise ValueError(f"training.class_weight: {unknown} are not classes of the target; "
                             f"its classes are {sorted(units)}")
        return training.model_copy(update={"class_weight": {
            str(units[c]): w for c, w in weights.items()}})

    # -- after fit ---------------------------------------------------------------------------
    def of(self, net: engine.Network) -> dict:
        """The model meta's held-out fields: test_metrics and confusion matrix (None without
        test rows), feature_importance (on the test rows, else the validation rows; None
        without either) and importance_rows (which of the two)."""
        found = {"test_metrics": None, "test_confusion_matrix": None, "test_rows": 0,
                 "feature_importance": None, "importance_rows": None}
        if self.task == "multilabel":
            return found
        rows = None
        if self.held_out is not None:
            X, y = self._test_rows()
            report = self._report(net, X, y)
            found.update(test_metrics=report["metrics"], test_rows=len(y),
                         test_confusion_matrix=report["confusion_matrix"])
            rows = (X, y, "test")
        elif net.run is not None and net.run.val_idx is not None and len(net.run.val_idx):
            idx = net.run.val_idx
            rows = (self.X[idx], self._in_units(self.Y[idx]), "validation")
        if rows is not None:
            found["feature_importance"] = self._importance(net, *rows[:2])
            found["importance_rows"] = rows[2]
        return found

    def _test_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The test rows as the network's input X and the target: class indices, or values
        in the target's units."""
        numeric, codes, y = self.held_out
        features = check_job_data(self.schema, self.spec, self.prep, self.dtype)
        if self.preparation is None:
            X = np.asarray(numeric, dtype=self.dtype)
        else:
            cat_info = self.schema.of_kind("categorical")
            fitted = {c.name: c for c in self.preparation.categorical}
            recoded = np.stack([recode(codes[:, slot], cat_info[slot].categories,
                                       fitted[cat_info[slot].name])
                                for slot in features.categorical], axis=1) \
                if features.categorical else None
            X = self.preparation.transform(numeric[:, features.numeric], recoded, self.dtype)
        if self.task == "classification":
            y, _ = prepared_targets(self.schema, self.spec, y, np.arange(0), self.dtype)
            return X, np.asarray(y, dtype=np.int64)
        return X, np.asarray(y, dtype=np.float64)

    def _in_units(self, Y: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return np.asarray(Y, dtype=np.int64)
        values = np.array(Y, dtype=np.float64).reshape(len(Y), -1)
        if self.scaled is not None:
            self.scaled.decode(values)
        return values[:, 0] if np.ndim(Y) == 1 else values

    def _outputs(self, net: engine.Network, X: np.ndarray) -> np.ndarray:
        """Probabilities, or predictions in the target's units: (n, k)."""
        outputs = np.array(net.predict(X), dtype=np.float64)
        if self.scaled is not None:
            self.scaled.decode(outputs)
        return outputs

    def _report(self, net: engine.Network, X: np.ndarray, y: np.ndarray) -> dict:
        outputs = self._outputs(net, X)
        if self.task == "classification":
            return scores.classification_report(y, outputs, self.classes)
        return scores.regression_report(y, outputs.reshape(np.shape(y)))

    def _groups(self) -> list[tuple[str, list[int]]]:
        """Each raw column's name and its input units, in the network's input order."""
        if self.preparation is None:
            names = [c.name for c in self.schema.of_kind("numeric")]
            return [(name, [j]) for j, name in enumerate(names)]
        groups, unit = [], 0
        for column in self.preparation.numeric:
            groups.append((column.name, [unit]))
            unit += 1
        for column in self.preparation.categorical:
            groups.append((column.name, list(range(unit, unit + column.width))))
            unit += column.width
        return groups

    def _importance(self, net: engine.Network, X: np.ndarray, y: np.ndarray) -> list[dict]:
        seed = self.training.seed or 0
        if len(X) > IMPORTANCE_ROWS:
            pick = np.sort(np.random.default_rng(seed).permutation(len(X))[:IMPORTANCE_ROWS])
            X, y = X[pick], y[pick]
        name = check_metric(self.training.metric, net.loss_function)
        return permutation_importance(
            lambda rows: self._outputs(net, rows), X, y, self._groups(),
            lambda truth, outputs: scores.SCORES[name](truth, outputs.reshape(
                outputs.shape if self.task == "classification" else np.shape(truth))),
            scores.HIGHER_IS_BETTER[name], seed=seed)
