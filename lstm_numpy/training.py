"""Minibatch SGD, written once for every backend.

The shared loop (``train_with``) owns everything that is not a kernel: input
checks, the per-epoch sample order (drawn in NumPy from the run's seed and handed
to every backend), the training-loss average, the non-finite-loss stop, timing
and the History. A backend supplies a *trainer*: an object that holds the model
and the data wherever that backend keeps them and runs one epoch per call:

    trainer = make_trainer(params, data, config)
    batch_losses, valid_loss = trainer.run_epoch(order)   # order (N_train,) int64
    params = trainer.host_params()
    trainer.stats                                          # dict: backend facts (threads, launches, ...)

``run_epoch`` takes the minibatches ``order[k*bs:(k+1)*bs]`` in turn (the last one
may be smaller), applies ``params -= lr * grads`` after each (gradients first
scaled so that their global norm is at most ``clip_norm`` when it is set) and
returns every minibatch's loss (before its update) and the validation loss
after the epoch. At the first non-finite minibatch loss it stops updating and
leaves the remaining entries NaN. Validation data never updates the weights.

``run_epoch(order, upto)`` also serves the harness's phase breakdown: with
``upto="forward"`` it runs only the forward passes (and losses) of every
minibatch, with ``upto="backward"`` forward and BPTT but no update; the
parameters are then left unchanged. The default ``upto="update"`` trains.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Protocol

import numpy as np

from .errors import NonFiniteLossError, UserError
from .model import TASKS, loss_and_grads, loss_only
from .params import Params, check_sizes


class Dataset(NamedTuple):
    """Training and validation arrays.

    X_* (N, T, D) float; Y_*: regression (N, Y) float, classification (N, T) int.
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    X_valid: np.ndarray
    Y_valid: np.ndarray


@dataclass(frozen=True)
class TrainConfig:
    """One configuration shared by every backend.

    threads: CPU backends' thread count (None: Numba's default).
    kernel_version: CUDA backend's kernel version (None: its default).
    """

    task: str = "regression"
    epochs: int = 5
    lr: float = 0.1
    batch_size: int = 16
    seed: int = 0
    clip_norm: float | None = None
    threads: int | None = None
    kernel_version: int | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise UserError(f"unknown task {self.task!r}; use one of {', '.join(TASKS)}.")
        check_sizes(epochs=self.epochs, batch_size=self.batch_size)
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"the learning rate must be a positive number, got {self.lr!r}.")
        if self.clip_norm is not None and not (np.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise UserError(f"clip_norm must be a positive number or None, got {self.clip_norm!r}.")
        if self.threads is not None:
            check_sizes(threads=self.threads)


@dataclass
class History:
    """Per-epoch losses, per-epoch wall seconds, the final parameters (host arrays) and backend stats."""

    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    params: Params | None = None
    stats: dict = field(default_factory=dict)


PHASES = ("forward", "backward", "update")


class Trainer(Protocol):
    stats: dict

    def run_epoch(self, order: np.ndarray, upto: str = "update") -> tuple[np.ndarray, float]: ...
    def host_params(self) -> Params: ...


def batch_bounds(n: int, batch_size: int) -> np.ndarray:
    """Start offsets of the minibatches into an epoch's order, plus n at the end: (n_batches + 1,)."""
    return np.append(np.arange(0, n, batch_size), n).astype(np.int64)


def epoch_orders(n: int, epochs: int, seed: int) -> np.ndarray:
    """The sample order of every epoch, (epochs, n) int64, from the run's seed."""
    rng = np.random.default_rng([seed, 0x5EED])   # a stream apart from init_params(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int64)


def check_phase(upto: str) -> None:
    """Every trainer's ``run_epoch`` accepts exactly the phases in PHASES."""
    if upto not in PHASES:
        raise UserError(f"unknown phase {upto!r}; use one of {', '.join(PHASES)}.")


def check_batch(params: Params, X, Y, task: str, split: str = ""):
    """Validate one batch against the model and cast it: X (N, T, D) to the parameters' dtype;
    Y (N, Y) float for regression, (N, T) int64 class ids in 0..Y-1 for classification, or None."""
    D, H, n_out = params.sizes
    X, name_x, name_y = np.asarray(X), f"X{split}", f"Y{split}"
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; use one of {', '.join(TASKS)}.")
    if X.ndim != 3 or X.shape[2] != D:
        raise UserError(f"{name_x} must have shape (N, T, {D}), got {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise UserError(f"{name_x} is empty (shape {X.shape}); the series is too short for the window.")
    X = np.ascontiguousarray(X, dtype=params.dtype)
    if Y is None:
        return X, None
    Y = np.asarray(Y)
    if task == "regression":
        if Y.shape != (X.shape[0], n_out):
            raise UserError(f"{name_y} must have shape ({X.shape[0]}, {n_out}) for regression, got {Y.shape}.")
        return X, np.ascontiguousarray(Y, dtype=params.dtype)
    if Y.shape != X.shape[:2] or not np.issubdtype(Y.dtype, np.integer):
        raise UserError(f"{name_y} must be integer class ids of shape {X.shape[:2]}, got {Y.dtype} {Y.shape}.")
    if Y.min() < 0 or Y.max() >= n_out:
        raise UserError(f"{name_y} has class ids outside 0..{n_out - 1}.")
    return X, np.ascontiguousarray(Y, dtype=np.int64)


def check_data(params: Params, data: Dataset, task: str) -> Dataset:
    """Validate every split with ``check_batch`` and cast the float arrays to the parameters' dtype."""
    X_train, Y_train = check_batch(params, data.X_train, data.Y_train, task, "_train")
    X_valid, Y_valid = check_batch(params, data.X_valid, data.Y_valid, task, "_valid")
    if X_train.shape[1] != X_valid.shape[1]:
        raise UserError("training and validation windows must have the same length T.")
    return Dataset(X_train, Y_train, X_valid, Y_valid)


def train_with(make_trainer: Callable[[Params, Dataset, TrainConfig], Trainer],
               params: Params, data: Dataset, config: TrainConfig,
               progress: Callable[[int, float], None] | None = None) -> History:
    """The epoch loop shared by every backend (see the module docstring).

    ``progress(epoch, seconds)``, if given, is called after each epoch.
    """
    data = check_data(params, data, config.task)
    n_train = data.X_train.shape[0]
    sizes = np.diff(batch_bounds(n_train, config.batch_size))
    orders = epoch_orders(n_train, config.epochs, config.seed)
    trainer = make_trainer(params, data, config)
    history = History()
    for epoch, order in enumerate(orders):
        start = time.perf_counter()
        batch_losses, valid_loss = trainer.run_epoch(order)
        history.epoch_seconds.append(time.perf_counter() - start)
        bad = np.flatnonzero(~np.isfinite(batch_losses))
        if bad.size:
            raise NonFiniteLossError(
                f"training diverged: the loss of epoch {epoch}, minibatch {bad[0]} is not finite; "
                f"lower the learning rate or set clip_norm.", epoch, int(bad[0]))
        if not np.isfinite(valid_loss):
            raise NonFiniteLossError(
                f"training diverged: the validation loss after epoch {epoch} is not finite; "
                f"lower the learning rate or set clip_norm.", epoch, None)
        history.train_loss.append(float(np.dot(batch_losses, sizes) / n_train))
        history.valid_loss.append(float(valid_loss))
        if progress is not None:
            progress(epoch, history.epoch_seconds[-1])
    history.params = trainer.host_params()
    history.stats = dict(getattr(trainer, "stats", {}))
    return history


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
    """The reference trainer: one ``loss_and_grads`` call per minibatch."""

    def __init__(self, params: Params, data: Dataset, config: TrainConfig):
        self.params = params.copy()
        self.data = data
        self.config = config
        self.stats = {}

    def run_epoch(self, order: np.ndarray, upto: str = "update") -> tuple[np.ndarray, float]:
        check_phase(upto)
        X, Y = self.data.X_train, self.data.Y_train
        bounds = batch_bounds(order.size, self.config.batch_size)
        losses = np.full(bounds.size - 1, np.nan)
        with np.errstate(over="ignore", invalid="ignore"):   # divergence is detected from the losses instead
            self._minibatches(X, Y, order, bounds, losses, upto)
            valid = loss_only(self.params, self.data.X_valid, self.data.Y_valid, self.config.task)
        return losses, valid

    def _minibatches(self, X, Y, order, bounds, losses, upto):
        for k in range(bounds.size - 1):
            rows = order[bounds[k]:bounds[k + 1]]
            if upto == "forward":
                losses[k] = loss_only(self.params, X[rows], Y[rows], self.config.task)
                continue
            loss, grads = loss_and_grads(self.params, X[rows], Y[rows], self.config.task)
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
