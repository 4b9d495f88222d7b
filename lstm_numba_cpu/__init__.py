"""lstm_numba_cpu: the LSTM with hand-written Numba parallel-CPU kernels (``kernels.py``).

Same entry points as lstm_numpy; the model, its parameters, initialisation and the epoch loop are
the reference's (only the kernels differ):

    loss_and_grads(params, X, Y, task) -> (loss, grads: Params)   one batch
    predict(params, X, task) -> outputs                           (B, Y) or probabilities (B, T, Y)
    make_trainer(params, data, config) -> Trainer                 one compiled call per epoch
    train(params, data, config, progress=None) -> History         lstm_numpy.train_with(make_trainer, ...)
    is_available(), describe()

Threads: config.threads, else NUMBA_NUM_THREADS. ``parallel-lstm bench`` times it.
"""
from parallel_lstm.lstm_numpy import Params, init_params, train_with

from .trainer import describe, is_available, loss_and_grads, make_trainer, predict


def train(params, data, config, progress=None):
    """Train with this backend's kernels in the shared epoch loop; see lstm_numpy.train_with."""
    return train_with(make_trainer, params, data, config, progress)


__all__ = ["Params", "init_params", "loss_and_grads", "predict", "make_trainer", "train", "is_available",
           "describe"]
