"""backprop engine: multi-layer networks trained by backpropagation on NumPy (or CuPy).

    from engine import Network
    net = Network({"layers": [{"units": 64, "activation": "tanh"},
                              {"units": 10, "activation": "softmax"}],
                   "loss": "cross_entropy"})
    history = net.fit(X, y, {"optimizer": "adam", "learning_rate": 1e-3, "epochs": 5})
"""
from . import memory
from .activations import ACTIVATIONS
from .data import check_data
from .errors import DeviceUnavailable, TrainingDiverged
from .gradcheck import gradcheck
from .initializers import INIT_SCHEMES, INITS
from .losses import LOSSES
from .network import Network, labels_from_outputs
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES
from .spec import EarlyStoppingSpec, InitSpec, LayerSpec, NetworkSpec, ScheduleSpec, TrainingSpec
from .split import check_split, split_rows

__all__ = [
    "ACTIVATIONS", "INITS", "INIT_SCHEMES", "LOSSES", "OPTIMIZERS", "SCHEDULES",
    "DeviceUnavailable", "EarlyStoppingSpec", "InitSpec", "LayerSpec", "Network",
    "NetworkSpec", "ScheduleSpec", "TrainingDiverged", "TrainingSpec", "check_data",
    "gradcheck", "labels_from_outputs", "memory", "split_rows", "check_split",
]
