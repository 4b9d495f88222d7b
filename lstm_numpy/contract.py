"""The contract every backend follows, written once: data, configuration, history, the trainer
protocol, task and phase codes, input checks, the loss denominator and the one epoch loop.

Letters: N samples, B batch, T time steps, D input features, H hidden units, Y outputs.

The shared loop (``train_with``) owns everything that is not a kernel: input
checks (shapes, class ids, NaN or infinite values, whether the run fits in memory),
the per-epoch sample order (drawn in NumPy from the run's seed and handed to every
backend, one epoch at a time), the training-loss average, the divergence stop,
timing and the History. A batch size beyond the training set means one minibatch
of all samples: the loop hands the trainer ``batch_size = N_train`` then, so that
no backend sizes buffers for rows that do not exist.

Divergence: training stops with NonFiniteLossError at the first minibatch whose
loss is NaN or infinite, and with its subclass ExplodingLossError at the first
minibatch whose loss exceeds ``EXPLODING_FACTOR`` (1e4) times the larger of 1 and
the run's first minibatch loss (the loss at the initial parameters). Sound training
lowers its loss; a squared error 10^4 times its start means outputs about 100 times off
the targets' scale; the floor of 1 keeps a run that starts near zero loss from being
stopped for a harmless rise. Both messages name the epoch and minibatch.

A backend supplies a *trainer*: an object that holds the model and the data
wherever that backend keeps them and runs one epoch per call:

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

import operator
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, NamedTuple, Protocol

import numpy as np

from .errors import ExplodingLossError, NonFiniteLossError, UserError
from .memory import check_fits, training_bytes
from .params import Params, check_seed, check_sizes


TASKS = ("regression", "classification")
REGRESSION, CLASSIFICATION = 0, 1                     # task codes for compiled code
TASK_CODES = {"regression": REGRESSION, "classification": CLASSIFICATION}

PHASES = ("forward", "backward", "update")
FORWARD, BACKWARD, UPDATE = 0, 1, 2                   # phase codes: how far a minibatch goes
PHASE_CODES = {"forward": FORWARD, "backward": BACKWARD, "update": UPDATE}

EXPLODING_FACTOR = 1e4     # see "Divergence" in the module docstring


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


def is_positive_number(value) -> bool:
    """A finite real number above zero (not a bool, not a string)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and bool(np.isfinite(value)) and value > 0)


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
        check_seed(self.seed)
        if not is_positive_number(self.lr):
            raise UserError(f"the learning rate must be a positive number, got {self.lr!r}.")
        if self.clip_norm is not None and not is_positive_number(self.clip_norm):
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


class EpochOrders:
    """The sample order of every epoch, drawn lazily from the run's seed: one (n,) int64 order at a time.

    ``for order in orders`` draws epoch after epoch; ``orders[k]`` is epoch k's order (drawn again from
    the start when k is behind the last one drawn); ``len(orders)`` is the number of epochs. Nothing
    of size epochs x n is ever held, so any epoch count fits in memory.
    """

    def __init__(self, n: int, epochs: int, seed: int):
        self.n, self.epochs, self.seed = n, epochs, seed
        self._rng, self._next = self._fresh_rng(), 0       # the stream, positioned before epoch _next

    def _fresh_rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0x5EED])  # a stream apart from init_params(seed)

    def __len__(self) -> int:
        return self.epochs

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = self._fresh_rng()
        for _ in range(self.epochs):
            yield rng.permutation(self.n).astype(np.int64)

    def __getitem__(self, epoch) -> np.ndarray:
        epoch = operator.index(epoch)
        if epoch < 0:
            epoch += self.epochs
        if not 0 <= epoch < self.epochs:
            raise IndexError(f"epoch {epoch} is outside 0..{self.epochs - 1}")
        if epoch < self._next:
            self._rng, self._next = self._fresh_rng(), 0
        while self._next < epoch:                          # the same draws as iterating, thrown away
            self._rng.permutation(self.n)
            self._next += 1
        self._next += 1
        return self._rng.permutation(self.n).astype(np.int64)


def epoch_orders(n: int, epochs: int, seed: int) -> EpochOrders:
    """The sample order of every epoch from the run's seed, drawn lazily (see EpochOrders)."""
    check_sizes(samples=n, epochs=epochs)
    check_seed(seed)
    return EpochOrders(n, epochs, seed)


def check_finite(name: str, array: np.ndarray) -> None:
    """A UserError naming the array and its first NaN or infinite entry (in C order)."""
    finite = np.isfinite(array)
    if not finite.all():
        index = tuple(int(i) for i in np.unravel_index(int(np.argmin(finite)), array.shape))
        raise UserError(f"{name} holds {float(array[index])} at index {index}; the data must be finite numbers, "
                        f"so fill or drop the missing or infinite values first.")


def check_batch(params: Params, X, Y, task: str, split: str = "", finite: bool = True):
    """Validate one batch against the model and cast it: X (N, T, D) to the parameters' dtype;
    Y (N, Y) float for regression, (N, T) int64 class ids in 0..Y-1 for classification, or None.

    The one check behind every entry point (``loss_and_grads``, ``loss_only``, ``predict``) and
    ``train_with``. ``finite=False`` lets NaN and infinite values through: trainers built directly
    accept them, so that the non-finite-loss stop can be exercised.
    """
    D, H, n_out = params.sizes
    name_x, name_y = f"X{split}", f"Y{split}"
    check_task(task)
    X = as_numeric_array(name_x, X)
    if X.ndim != 3 or X.shape[2] != D:
        raise UserError(f"{name_x} must have shape (N, T, {D}), got {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise UserError(f"{name_x} is empty (shape {X.shape}); the series is too short for the window.")
    X = np.ascontiguousarray(X, dtype=params.dtype)
    if finite:
        check_finite(name_x, X)
    if Y is None:
        return X, None
    Y = as_numeric_array(name_y, Y)
    if task == "regression":
        if Y.shape != (X.shape[0], n_out):
            raise UserError(f"{name_y} must have shape ({X.shape[0]}, {n_out}) for regression, got {Y.shape}.")
        Y = np.ascontiguousarray(Y, dtype=params.dtype)
        if finite:
            check_finite(name_y, Y)
        return X, Y
    if Y.shape != X.shape[:2] or not np.issubdtype(Y.dtype, np.integer):
        raise UserError(f"{name_y} must be integer class ids of shape {X.shape[:2]}, got {Y.dtype} {Y.shape}.")
    if Y.min() < 0 or Y.max() >= n_out:
        first = tuple(int(i) for i in np.argwhere((Y < 0) | (Y >= n_out))[0])
        raise UserError(f"{name_y} has class ids outside 0..{n_out - 1} (the first, at index {first}, is "
                        f"{int(Y[first])}); give class ids from 0 to {n_out - 1}.")
    return X, np.ascontiguousarray(Y, dtype=np.int64)


def as_numeric_array(name: str, values) -> np.ndarray:
    """``values`` as a NumPy array of numbers (bool, integer or real); anything else is one sentence."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as exc:      # ragged nested lists
        raise UserError(f"{name} is not a rectangular array ({exc}); give a NumPy array.") from None
    if array.dtype.kind not in "biuf":
        raise UserError(f"{name} must hold real numbers, got dtype {array.dtype}; convert it to floats.")
    return array


def check_data(params: Params, data: Dataset, task: str, finite: bool = False) -> Dataset:
    """Validate every split with ``check_batch`` and cast the float arrays to the parameters' dtype.

    ``train_with`` asks for ``finite=True``; a trainer built directly accepts NaN (see check_batch).
    """
    X_train, Y_train = check_batch(params, data.X_train, data.Y_train, task, "_train", finite)
    X_valid, Y_valid = check_batch(params, data.X_valid, data.Y_valid, task, "_valid", finite)
    if X_train.shape[1] != X_valid.shape[1]:
        raise UserError("training and validation windows must have the same length T.")
    return Dataset(X_train, Y_train, X_valid, Y_valid)


def check_divergence(batch_losses: np.ndarray, valid_loss: float, epoch: int, first_loss: float) -> None:
    """Raise at the first minibatch whose loss is not finite or is exploding (see the module docstring)."""
    bound = EXPLODING_FACTOR * max(first_loss, 1.0)
    bad = np.flatnonzero(~np.isfinite(batch_losses) | (batch_losses > bound))
    if bad.size:
        k = int(bad[0])
        if not np.isfinite(batch_losses[k]):
            raise NonFiniteLossError(
                f"training diverged: the loss of epoch {epoch}, minibatch {k} is not finite; "
                f"lower the learning rate or set clip_norm.", epoch, k)
        raise ExplodingLossError(
            f"training diverged: the loss of epoch {epoch}, minibatch {k} is {batch_losses[k]:.3g}, more than "
            f"{EXPLODING_FACTOR:g} times the first minibatch's {first_loss:.3g}; lower the learning rate or "
            f"set clip_norm.", epoch, k)
    if not np.isfinite(valid_loss):
        raise NonFiniteLossError(
            f"training diverged: the validation loss after epoch {epoch} is not finite; "
            f"lower the learning rate or set clip_norm.", epoch, None)


def train_with(make_trainer: Callable[[Params, Dataset, TrainConfig], Trainer],
               params: Params, data: Dataset, config: TrainConfig,
               progress: Callable[[int, float], None] | None = None) -> History:
    """The epoch loop shared by every backend (see the module docstring).

    ``progress(epoch, seconds)``, if given, is called after each epoch.
    """
    data = check_data(params, data, config.task, finite=True)
    (n_train, T, D), n_valid = data.X_train.shape, data.X_valid.shape[0]
    config = replace(config, batch_size=min(config.batch_size, n_train))
    _, H, Y = params.sizes
    check_fits(training_bytes(n_train, n_valid, T, D, H, Y, config.batch_size, params.dtype.itemsize),
               f"training with N={n_train}, T={T}, H={H}, B={config.batch_size}",
               "use fewer samples, a shorter window, a smaller hidden size or a smaller batch")
    sizes = np.diff(batch_bounds(n_train, config.batch_size))
    trainer = make_trainer(params, data, config)
    history = History()
    first_loss = None
    for epoch, order in enumerate(epoch_orders(n_train, config.epochs, config.seed)):
        start = time.perf_counter()
        batch_losses, valid_loss = trainer.run_epoch(order)
        history.epoch_seconds.append(time.perf_counter() - start)
        if first_loss is None:
            first_loss = float(batch_losses[0])
        check_divergence(batch_losses, valid_loss, epoch, first_loss)
        history.train_loss.append(float(np.dot(batch_losses, sizes) / n_train))
        history.valid_loss.append(float(valid_loss))
        if progress is not None:
            progress(epoch, history.epoch_seconds[-1])
    history.params = trainer.host_params()
    history.stats = dict(getattr(trainer, "stats", {}))
    return history
