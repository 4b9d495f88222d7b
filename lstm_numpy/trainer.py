"""The reference trainer: one ``loss_and_grads`` call per minibatch, SGD in NumPy.

The epoch loop it runs in, and the protocol it follows, are in ``contract.py``.
"""
from __future__ import annotations

import numpy as np

from .contract import Dataset, History, TrainConfig, batch_bounds, check_data, check_phase, train_with
from .model import batch_loss, batch_loss_and_grads
from .params import Params


def clip_scale(grads: Params, clip_norm: float | None) -> float:
    """The factor that brings the global gradient norm down to clip_norm (1 when it is below)."""
    if clip_norm is None:
        return 1.0
    norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.arrays()))
    return clip_norm / norm if norm > clip_norm else 1.0


def sgd_update(params: Params, grads: Params, lr: float, clip_norm: float | None) -> None:
    """params -= lr * scale * grads, in place."""
    step = lr * clip_scale(grads, clip_norm)
    for p, g in zip(params.arrays(), grads.arrays()):
        p -= step * g


class NumpyTrainer:
    """The reference trainer: one ``loss_and_grads`` call per minibatch, on data checked once here."""

    def __init__(self, params: Params, data: Dataset, config: TrainConfig):
        self.params = params.copy()
        self.data = check_data(params, data, config.task)
        self.config = config
        self.stats = {}

    def run_epoch(self, order: np.ndarray, upto: str = "update") -> tuple[np.ndarray, float]:
        check_phase(upto)
        X, Y = self.data.X_train, self.data.Y_train
        bounds = batch_bounds(order.size, self.config.batch_size)
        losses = np.full(bounds.size - 1, np.nan)
        with np.errstate(over="ignore", invalid="ignore"):   # divergence is detected from the losses instead
            self._minibatches(X, Y, order, bounds, losses, upto)
            valid = batch_loss(self.params, self.data.X_valid, self.data.Y_valid, self.config.task)
        return losses, valid

    def _minibatches(self, X, Y, order, bounds, losses, upto):
        for k in range(bounds.size - 1):
            rows = order[bounds[k]:bounds[k + 1]]
            if upto == "forward":
                losses[k] = batch_loss(self.params, X[rows], Y[rows], self.config.task)
                continue
            loss, grads = batch_loss_and_grads(self.params, X[rows], Y[rows], self.config.task)
            losses[k] = loss
            if not np.isfinite(loss):
                break
            if upto == "update":
                sgd_update(self.params, grads, self.config.lr, self.config.clip_norm)

    def host_params(self) -> Params:
        return self.params.copy()


make_trainer = NumpyTrainer


def train(params: Params, data: Dataset, config: TrainConfig, progress=None) -> History:
    """Train the reference model; see ``train_with``."""
    return train_with(make_trainer, params, data, config, progress)
