"""lstm_numpy: the reference LSTM and the vocabulary every backend shares.

Read ``model.py`` for the equations, ``params.py`` for the parameter layout
(gate order i, f, g, o) and ``training.py`` for the one epoch loop.
"""
from .backends import BACKENDS, get_backend
from .checks import RTOL, assert_close, rtol_for
from .errors import NonFiniteLossError, UserError
from .model import TASKS, head_forward, loss_and_grads, loss_only, lstm_backward, lstm_forward, predict, sigmoid
from .params import Params, init_params, load_params, save_params, shapes_for
from .training import Dataset, History, TrainConfig, batch_bounds, epoch_orders, train, train_with

__all__ = [
    "BACKENDS", "get_backend", "RTOL", "assert_close", "rtol_for", "NonFiniteLossError", "UserError",
    "TASKS", "head_forward", "loss_and_grads", "loss_only", "lstm_backward", "lstm_forward", "predict",
    "sigmoid", "Params", "init_params", "load_params", "save_params", "shapes_for", "Dataset", "History",
    "TrainConfig", "batch_bounds", "epoch_orders", "train", "train_with",
]
