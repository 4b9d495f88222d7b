"""lstm_numpy: the reference LSTM and the vocabulary every backend shares.

Read ``model.py`` for the equations, ``params.py`` for the parameter layout
(gate order i, f, g, o), ``contract.py`` for what every backend shares (data,
configuration, history, task and phase codes, input checks, the one epoch loop),
``trainer.py`` for the reference trainer, ``flops.py`` for the work model,
``files.py`` for atomic, never-overwriting file publishing and ``memory.py`` for
the memory a model or a training run needs.

Every backend package (this one, ``lstm_numba_cpu``, ``lstm_numba_cuda``) exports:

    loss_and_grads(params, X, Y, task) -> (loss, grads: Params)   one batch
    predict(params, X, task) -> outputs                           (B, Y) or probabilities (B, T, Y)
    make_trainer(params, data, config) -> Trainer                 see contract.py
    train(params, data, config, progress=None) -> History         train_with(make_trainer, ...)
    is_available() -> str | None                                  None, or why it cannot run here
    describe() -> dict                                            facts for results files
    Params, init_params                                           re-exported from here
"""
from .backends import BACKENDS, get_backend
from .checks import RTOL, assert_close, rtol_for
from .errors import ExplodingLossError, NameTakenError, NonFiniteLossError, UserError
from .contract import (PHASES, TASKS, Dataset, EpochOrders, History, TrainConfig, batch_bounds, epoch_orders,
                       loss_terms, train_with)
from .files import publish_file, publish_files
from .flops import epoch_flops, training_flops
from .model import (gate_gradients, head_forward, loss_and_grads, loss_only, lstm_backward, lstm_forward, predict,
                    sigmoid, weight_gradients)
from .params import Params, init_params, load_params, save_params, shapes_for
from .trainer import make_trainer, train


def is_available() -> str | None:
    """The reference runs wherever NumPy does."""
    return None


def describe() -> dict:
    """Facts about this backend for results files."""
    import numpy
    return {"backend": "numpy", "numpy": numpy.__version__}


__all__ = [
    "BACKENDS", "get_backend", "RTOL", "assert_close", "rtol_for", "NonFiniteLossError", "UserError",
    "ExplodingLossError", "NameTakenError", "publish_file", "publish_files", "EpochOrders",
    "TASKS", "gate_gradients", "weight_gradients", "head_forward", "loss_and_grads", "loss_only", "lstm_backward", "lstm_forward", "predict",
    "sigmoid", "Params", "init_params", "load_params", "save_params", "shapes_for", "Dataset", "History",
    "TrainConfig", "batch_bounds", "epoch_orders", "loss_terms", "train", "train_with", "PHASES", "make_trainer",
    "epoch_flops", "training_flops",
    "is_available", "describe",
]
