"""Trained models kept loaded in the API process: a cached predict makes no Redis round trip."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import redis

from core.codec import npz_to_arrays
from core.records import ModelRecord
from core.store import Store
import engine
from engine.preparation import Preparation


@dataclass(frozen=True)
class LoadedModel:
    meta: ModelRecord
    net: engine.Network
    preparation: Preparation | None = None

    @property
    def input_width(self) -> int:
        """Values per row predict takes: the raw columns of a model with a preparation."""
        return len(self.preparation.columns) if self.preparation else self.meta.n_inputs


def network_from_weights(meta: ModelRecord, weights: bytes) -> engine.Network:
    """Rebuild a trained network from its model record and npz weights (W0, b0, W1, ...)."""
    arrays = npz_to_arrays(weights)
    n_layers = len(meta.network["layers"])
    net = engine.Network(meta.network, n_inputs=meta.n_inputs, dtype=meta.dtype)
    net.params = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n_layers)]
    return net


def loaded_model(meta: ModelRecord, weights: bytes) -> LoadedModel:
    return LoadedModel(meta, network_from_weights(meta, weights), meta.preparation)


log = logging.getLogger("backprop.api")

TOMBSTONES = 65536
"""Ids of recently deleted models kept, so that a load racing a deletion is never cached."""

RESUBSCRIBE_S = 0.5
"""Pause before the deletion listener tries Redis again."""


class ModelCache:
    """A small LRU of loaded models, in each API process.

    Models never change once written, only disappear: every deletion is published on
    keys.models_deleted(), and a listener thread evicts the model in every API process. While
    that listener is not subscribed (starting, Redis away or just back) a deletion could go
    unseen, so nothing is served from or kept in the cache: predicts load from Redis.
    """

    def __init__(self, store: Store, size: int, listen: bool = True):
        self.store, self.size = store, max(size, 1)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._listening = False
        self._generation = 0                # +1 whenever the listener subscribes or drops
        self._lock = threading.Lock()
        self.listener: DeletionListener | None = None
        if listen:
            self.listener = DeletionListener(store, self)
            self.listener.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the deletion listener (at app shutdown) and forget every model."""
        if self.listener is not None:
            self.listener.stop(timeout_s)
        self.set_listening(False)

    def get(self, tenant: str, model_id: str) -> LoadedModel | None:
        """The tenant's model, loaded from Redis unless this process has it. Its owner is read
        first (one HGET), so another tenant's model is never loaded: a 404 costs no load."""
        loaded = self.peek(None, model_id)
        if loaded is None:
            if self.store.model_owner(model_id) != tenant:
                return None
            generation = self._generation
            found = self.store.model_with_weights(None, model_id)  # the one round trip
            if found is None:
                return None
            loaded = loaded_model(*found)
            with self._lock:
                # Kept only if no deletion can have slipped by while it loaded: none was
                # announced for it, and the listener stayed subscribed throughout.
                if (self._listening and self._generation == generation
                        and model_id not in self._deleted):
                    self._models[model_id] = loaded
                    while len(self._models) > self.size:
                        self._models.popitem(last=False)
        return loaded if loaded.meta.tenant == tenant else None

    def peek(self, tenant: str | None, model_id: str) -> LoadedModel | None:
        """The model if this process has it loaded (and it is the tenant's; None: any
        tenant's), never asking Redis."""
        with self._lock:
            loaded = self._models.get(model_id) if self._listening else None
            if loaded is not None:
                self._models.move_to_end(model_id)
        if loaded is None or (tenant is not None and loaded.meta.tenant != tenant):
            return None
        return loaded

    def evict(self, model_id: str | None, deleted: bool = False) -> None:
        with self._lock:
            self._models.pop(model_id, None)
            if deleted and model_id is not None:
                self._deleted[model_id] = None
                while len(self._deleted) > TOMBSTONES:
                    self._deleted.popitem(last=False)

    def set_listening(self, listening: bool) -> None:
        """Called by the listener: subscribed (again), or lost Redis. Either way deletions may
        have been missed since the cache was filled, so it starts empty."""
        with self._lock:
            self._models.clear()
            self._listening = listening
            self._generation += 1


LISTEN_POLL_S = 0.5
"""How long the listener waits for a message before it checks whether it was stopped."""


class DeletionListener(threading.Thread):
    """Evicts each model whose id arrives on keys.models_deleted() until stop() (the app's
    shutdown), subscribing again whenever Redis comes back."""

    def __init__(self, store: Store, cache: ModelCache):
        super().__init__(name="backprop-model-deletions", daemon=True)
        self.store, self.cache = store, cache
        self._stopping = threading.Event()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to end, and wait up to timeout_s for it (it polls every
        LISTEN_POLL_S, or sleeps RESUBSCRIBE_S while Redis is away)."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        channel = self.store.keys.models_deleted()
        while not self._stopping.is_set():
            pubsub = self.store.r.pubsub()
            try:
                pubsub.subscribe(channel)
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=LISTEN_POLL_S)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":      # also after a silent reconnect
                        self.cache.set_listening(True)
                    elif message["type"] == "message":
                        self.cache.evict(message["data"].decode(), deleted=True)
            except Exception as exc:            # never die: a dead listener would miss deletions
                if not isinstance(exc, (redis.RedisError, OSError)):
                    log.exception("the model deletion listener failed; subscribing again")
                self.cache.set_listening(False)
                self._stopping.wait(RESUBSCRIBE_S)
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass

