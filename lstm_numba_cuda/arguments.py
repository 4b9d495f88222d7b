"""The named argument groups the CUDA kernels take, and the argument kinds that declare each kernel's arguments.

Letters: N samples of a split, B rows of the minibatch (``nrows``), T time steps, D input features,
H hidden units, Y outputs; FT is the run's float type (float64 or float32).

Kernels take NamedTuples of device arrays instead of long positional lists and read their
members by name (``params.W_hh``, ``caches.dz``); the trainer builds each group once:

    ParamArrays  W_ih (4H, D), W_hh (4H, H), b (4H,), W_y (Y, H), b_y (Y,): parameters or gradients, FT
    Batch        X (N, T, D) FT, targets (N, Y) FT or (N, T) int64, order (N,) int64, off, nrows:
                 the rows X[order[off + b]] for b < nrows (a minibatch, a validation chunk, all of a split)
    Caches       gates (T, B, 4H) activated i, f, g, o; c, h (T+1, B, H) with c[0] = h[0] = 0;
                 tanh_c (T, B, H); dz (T, B, 4H) gradient on the pre-activations;
                 dout (T, B, Y) gradient on the head outputs (regression: dout[T-1] only)
    EpochState   losses (n_batches + 1,) float64: every minibatch loss, then the validation loss;
                 status (1,) int32: 1 once a minibatch loss was not finite; counter (1,) int32: the
                 last-block ticket of one-launch reductions; scale (1,) FT: the clip scale of the
                 current minibatch; partial (blocks,) FT: per-block sums of squares
    SgdSettings  lr, has_clip (0 or 1), clip_norm: host floats and an int

Each kernel declares its argument list once, in its ``def`` line, with a kind per argument:

    def sgd(params: PARAMS, grads: PARAMS, settings: SGD, state: EPOCH): ...

``ptx_check`` types every argument from its kind (per dtype, and per task where the kind depends
on it) and compiles the kernel from that, so no argument list is written twice. Numba ignores the
annotations when it compiles for a launch.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numba
import numpy as np


class ParamArrays(NamedTuple):
    W_ih: Any
    W_hh: Any
    b: Any
    W_y: Any
    b_y: Any


class Batch(NamedTuple):
    X: Any
    targets: Any
    order: Any
    off: int
    nrows: int

    def rows(self, off: int, nrows: int) -> "Batch":
        """The same split, rows order[off:off + nrows]."""
        return self._replace(off=off, nrows=nrows)


class Caches(NamedTuple):
    gates: Any
    c: Any
    h: Any
    tanh_c: Any
    dz: Any
    dout: Any


class EpochState(NamedTuple):
    losses: Any
    status: Any
    counter: Any
    scale: Any
    partial: Any


class SgdSettings(NamedTuple):
    lr: float
    has_clip: int
    clip_norm: float


class Kind(NamedTuple):
    """What one kernel argument is: ``example(dtype, task)`` builds a host value of its Numba type."""

    name: str
    example: Callable[[np.dtype, str], Any]
    by_task: bool = False   # the type differs between tasks (the targets' dtype)

    def numba_type(self, dtype, task: str | None = None):
        return numba.typeof(self.example(np.dtype(dtype), task))


def _floats(ndim: int):
    return lambda dtype, task: np.empty((1,) * ndim, dtype)


def _targets(dtype, task):
    return np.empty((1, 1), dtype if task == "regression" else np.int64)


INT = Kind("int64 scalar", lambda dtype, task: 0)
REAL = Kind("float64 scalar (host floats: the fill value)", lambda dtype, task: 0.0)
FLOATS_1D = Kind("1-D FT array", _floats(1))
FLOATS_2D = Kind("2-D FT array", _floats(2))
FLOATS_3D = Kind("3-D FT array", _floats(3))
PARAMS = Kind("ParamArrays", lambda dtype, task: ParamArrays(*(np.empty((1,) * nd, dtype) for nd in (2, 2, 1, 2, 1))))
BATCH = Kind("Batch", lambda dtype, task: Batch(np.empty((1, 1, 1), dtype), _targets(dtype, task),
                                                np.empty(1, np.int64), 0, 0), by_task=True)
CACHES = Kind("Caches", lambda dtype, task: Caches(*(np.empty((1, 1, 1), dtype) for _ in Caches._fields)))
EPOCH = Kind("EpochState", lambda dtype, task: EpochState(np.empty(1, np.float64), np.empty(1, np.int32),
                                                          np.empty(1, np.int32), np.empty(1, dtype),
                                                          np.empty(1, dtype)))
SGD = Kind("SgdSettings", lambda dtype, task: SgdSettings(0.0, 0, 0.0))
