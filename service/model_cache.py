"""Trained models kept loaded in the API process: a cached predict makes no Redis round trip."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

import engine
from worker.codec import npz_to_arrays
from worker.store import Store


@dataclass(frozen=True)
class LoadedModel:
    meta: dict
    net: engine.Network


def network_from_weights(meta: dict, weights: bytes) -> engine.Network:
    """Rebuild a trained network from its model meta and npz weights (W0, b0, W1, ...)."""
    arrays = npz_to_arrays(weights)
    n_layers = len(meta["network"]["layers"])
    net = engine.Network(meta["network"], n_inputs=meta["n_inputs"], dtype=meta["dtype"])
    net.params = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n_layers)]
    return net


class ModelCache:
    """A small LRU of loaded models; models never change once written, only disappear."""

    def __init__(self, store: Store, size: int):
        self.store, self.size = store, max(size, 1)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant: str, model_id: str) -> LoadedModel | None:
        with self._lock:
            loaded = self._models.get(model_id)
            if loaded is not None:
                self._models.move_to_end(model_id)
        if loaded is None:
            found = self.store.model_with_weights(None, model_id)  # the one round trip
            if found is None:
                return None
            loaded = LoadedModel(found[0], network_from_weights(*found))
            with self._lock:
                self._models[model_id] = loaded
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
        return loaded if loaded.meta.get("tenant") == tenant else None

    def peek(self, tenant: str, model_id: str) -> LoadedModel | None:
        """The model if this process has it loaded (and it is the tenant's), never asking Redis."""
        with self._lock:
            loaded = self._models.get(model_id)
            if loaded is not None:
                self._models.move_to_end(model_id)
        return loaded if loaded is not None and loaded.meta.get("tenant") == tenant else None

    def evict(self, model_id: str | None) -> None:
        with self._lock:
            self._models.pop(model_id, None)


def predict_payload(loaded: LoadedModel, X: np.ndarray) -> dict:
    """outputs for every model; labels too for classifiers."""
    outputs = loaded.net.predict(X)
    payload: dict = {"model_id": loaded.meta["id"], "outputs": outputs}
    if loaded.meta.get("task") in ("classification", "multilabel"):
        payload["labels"] = labels_from_outputs(loaded.net.spec, outputs)
    return payload


def labels_from_outputs(spec, outputs: np.ndarray) -> np.ndarray:
    """What net.predict_labels gives, from outputs already computed (one forward pass, not two):
    argmax for softmax, f > 0.5 for sigmoid ((n,) for one unit)."""
    if spec.layers[-1].activation == "softmax":
        return outputs.argmax(axis=1)
    labels = (outputs > 0.5).astype(np.int64)
    return labels[:, 0] if labels.shape[1] == 1 else labels
