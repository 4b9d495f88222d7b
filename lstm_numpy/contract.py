"""The contract every backend follows, written once: data, configuration, history, the trainer
protocol, task and phase codes, input checks, the loss denominator and the one epoch loop.

Letters: N samples, B batch, T time steps, D input features, H hidden units, Y outputs.

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

``run_epoch(order, upto)`` also serves the phase breakdown of the measuring tools:
with ``upto="forward"`` it runs only the forward passes (and losses) of every
minibatch, with ``upto="backward"`` forward and BPTT but no update; the
parameters are then left unchanged. The default ``upto="update"`` trains.

Compiled code cannot take strings, so tasks and phases also have integer codes
(``TASK_CODES``, ``PHASE_CODES``), defined here and nowhere else.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Protocol

import numpy as np

from .errors import NonFiniteLossError, UserError
from .params import Params, check_sizes


TASKS = ("regression", "classification")
REGRESSION, CLASSIFICATION = 0, 1                     # task codes for compiled code
TASK_CODES = {"regression": REGRESSION, "classification": CLASSIFICATION}

PHASES = ("forward", "backward", "update")
FORWARD, BACKWARD, UPDATE = 0, 1, 2                   # phase codes: how far a minibatch goes
PHASE_CODES = {"forward": FORWARD, "backward": BACKWARD, "update": UPDATE}


def check_task(task: str) -> int:
    """The task's code; an unknown task is a UserError naming the valid ones."""
    if task not in TASK_CODES:
        raise UserError(f"unknown task {task!r}; use one of {', '.join(TASKS)}.")
    return TASK_CODES[task]


def check_phase(upto: str) -> int:
    """The phase's code; every trainer's ``run_epoch`` accepts exactly the phases in PHASES."""
    if upto not in PHASE_CODES:
        raise UserError(f"unknown phase {upto!r}; use one of {', '.join(PHASES)}.")
    return PHASE_CODES[upto]


def loss_terms(task: str, B: int, T: int, Y: int) -> int:
    """The loss denominator: how many terms the mean runs over for B samples.

    regression: the squared errors of B samples x Y outputs; classification: the
    cross-entropies of B samples x T steps.
    """
    return B * (Y if check_task(task) == REGRESSION else T)


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
        check_task(self.task)
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


def check_batch(params: Params, X, Y, task: str, split: str = ""):
    """Validate one batch against the model and cast it: X (N, T, D) to the parameters' dtype;
    Y (N, Y) float for regression, (N, T) int64 class ids in 0..Y-1 for classification, or None."""
    D, H, n_out = params.sizes
    X, name_x, name_y = np.asarray(X), f"X{split}", f"Y{split}"
    check_task(task)
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


