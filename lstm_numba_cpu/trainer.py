"""The Numba parallel-CPU backend's entry points: buffers on the host, every epoch in compiled code.

The epoch loop itself (orders, averaging, non-finite stop, History) is lstm_numpy.train_with; this
module only supplies the trainer it calls, plus ``loss_and_grads`` and ``predict`` for one batch.
"""
from __future__ import annotations

import numba
import numpy as np

from parallel_lstm.lstm_numpy import Params, batch_bounds
from parallel_lstm.lstm_numpy.contract import Dataset, TrainConfig, check_batch, check_data, check_phase, check_task, loss_terms

from . import kernels
from .threads import ThreadPolicy

ROW_GROUP = 8        # batch rows per prange iteration (forward, BPTT); fewer when B is small
GRAD_BLOCK = 64      # at most this many rows of dW_hh^T (4H values each) per prange iteration


def row_group(batch: int, threads: int) -> int:
    """Rows per prange iteration: up to ROW_GROUP, but at least one group per thread.
    The results do not depend on it (each row's sums run in their own fixed order)."""
    return max(1, min(ROW_GROUP, -(-batch // threads)))


ALIGN = 64           # bytes: a cache line and one AVX-512 vector; NumPy only guarantees 16


def aligned_zeros(shape, dtype) -> np.ndarray:
    """Zeros whose first element starts a cache line, so that the SIMD loads of every row of
    4H or H values (a multiple of 64 bytes in the heavy workloads) never straddle two lines."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.zeros(n * dtype.itemsize + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + n * dtype.itemsize].view(dtype).reshape(shape)


def aligned_copy(a: np.ndarray) -> np.ndarray:
    out = aligned_zeros(a.shape, a.dtype)
    out[...] = a
    return out


def targets_as_floats(data: Dataset, dtype) -> Dataset:
    """Class ids (small integers, exact in float32 and float64) stored in the model's dtype, so that
    one compiled epoch serves both tasks: half the JIT time. The head casts them back to int64."""
    return data._replace(Y_train=np.ascontiguousarray(data.Y_train, dtype=dtype),
                         Y_valid=np.ascontiguousarray(data.Y_valid, dtype=dtype))


def grad_block(H: int, threads: int) -> int:
    """Rows of dW_hh^T per prange iteration: H / threads (balanced), at most GRAD_BLOCK (fewer passes
    over dz, which lives in L3, against more rows of dW_hh^T kept in L2). No effect on the results."""
    return max(1, min(GRAD_BLOCK, -(-H // threads)))


def workspace(B_max: int, T: int, D: int, H: int, Y: int, Y_cols: int, y_dtype, dtype) -> kernels.Workspace:
    """The preallocated buffers of one minibatch (layouts in kernels.py): fixed shapes, reused.
    Y_cols and y_dtype describe the targets: (Y, float) for regression, (T, class ids) for classification."""
    def z(*shape):
        return aligned_zeros(shape, dtype)
    return kernels.Workspace(Xb=z(T, B_max, D), Yb=np.zeros((B_max, Y_cols), y_dtype), h=z(T + 1, B_max, H),
                             c=z(T + 1, B_max, H), gates=z(T, B_max, 4 * H), tanh_c=z(T, B_max, H),
                             out=z(T, B_max, Y), dh=z(T, B_max, H), dz=z(T, B_max, 4 * H), dh_next=z(B_max, H),
                             dc_next=z(B_max, H), row_loss=np.zeros(B_max, np.float64))


def gradient_buffers(params: Params) -> tuple:
    """(dW_ihT (D, 4H), dW_hhT (H, 4H), db, dW_y, db_y): the kernels' gradient layout."""
    D, H, Y = params.sizes
    return tuple(aligned_zeros(shape, params.dtype) for shape in ((D, 4 * H), (H, 4 * H), (4 * H,), (Y, H), (Y,)))


def transposed(params: Params) -> tuple[np.ndarray, np.ndarray]:
    return aligned_copy(params.W_ih.T), aligned_copy(params.W_hh.T)


class NumbaCpuTrainer:
    """Holds a private copy of the parameters, the gradients and the workspace; see lstm_numpy.contract."""

    def __init__(self, params: Params, data: Dataset, config: TrainConfig):
        self.config = config
        self.task = check_task(config.task)
        self.data = targets_as_floats(check_data(params, data, config.task), params.dtype)
        self.policy = ThreadPolicy(config.threads)
        self.params = Params(*(aligned_copy(a) for a in params.arrays()))
        self.grads = gradient_buffers(params)
        self.W_ihT, self.W_hhT = transposed(self.params)
        N, T, D = self.data.X_train.shape
        _, H, Y = self.params.sizes
        B = min(config.batch_size, N)       # a minibatch never holds more rows than the data
        self.ws = workspace(B, T, D, H, Y, self.data.Y_train.shape[1], self.data.Y_train.dtype, self.params.dtype)
        self.terms_per_sample = loss_terms(config.task, 1, T, Y)
        self.stats = {"threading_layer": threading_layer(), "threads_mode": self.policy.mode}

    def _use_threads(self, threads: int) -> tuple[int, int]:
        """Set Numba's thread count (per calling thread) and return the row group and gradient block for it."""
        numba.set_num_threads(threads)
        group = row_group(self.ws.h.shape[1], threads)
        block = grad_block(self.params.sizes[1], threads)
        self.stats.update(threads=threads, threads_used=dict(self.policy.used), row_group=group, grad_block=block)
        return group, block

    def run_epoch(self, order: np.ndarray, upto: str = "update") -> tuple[np.ndarray, float]:
        phase = check_phase(upto)
        group, block = self._use_threads(self.policy.next_epoch())
        order = np.ascontiguousarray(order, dtype=np.int64)
        bounds = batch_bounds(order.size, self.config.batch_size)
        losses = np.full(bounds.size - 1, np.nan)
        d = self.data
        clip = -1.0 if self.config.clip_norm is None else float(self.config.clip_norm)
        valid = kernels.train_epoch(self.params.arrays(), self.W_ihT, self.W_hhT, self.grads, self.ws,
                                    d.X_train, d.Y_train, d.X_valid, d.Y_valid, order, bounds, self.task,
                                    self.terms_per_sample, phase, float(self.config.lr), clip, group, block, losses)
        return losses, float(valid)

    def host_params(self) -> Params:
        return self.params.copy()


make_trainer = NumbaCpuTrainer


def loss_and_grads(params: Params, X: np.ndarray, Y: np.ndarray, task: str) -> tuple[float, Params]:
    """Loss and gradients of every parameter for one batch. X (B, T, D); Y (B, Y) or (B, T) int."""
    code = check_task(task)
    X, Y = check_batch(params, X, Y, task)                 # compiled code has no bounds checks
    Y = np.ascontiguousarray(Y, dtype=params.dtype)        # class ids too: see targets_as_floats
    B, T, D = X.shape
    _, H, Yn = params.sizes
    ws = workspace(B, T, D, H, Yn, Y.shape[1], Y.dtype, params.dtype)
    grads = gradient_buffers(params)
    params = Params(*(aligned_copy(a) for a in params.arrays()))
    W_ihT, W_hhT = transposed(params)
    terms_per_sample = loss_terms(task, 1, T, Yn)
    threads = numba.get_num_threads()
    total = kernels.minibatch(params.arrays(), W_ihT, W_hhT, grads, ws, X, Y, np.arange(B), code, terms_per_sample,
                              True, row_group(B, threads), grad_block(H, threads))
    dW_ihT, dW_hhT, db, dW_y, db_y = grads
    return float(total / (B * terms_per_sample)), Params(dW_ihT.T.copy(), dW_hhT.T.copy(), db, dW_y, db_y)


def predict(params: Params, X: np.ndarray, task: str = "regression") -> np.ndarray:
    """Regression: predictions (B, Y). Classification: class probabilities (B, T, Y)."""
    code = check_task(task)
    X, _ = check_batch(params, X, None, task)
    B, T, D = X.shape
    _, H, Yn = params.sizes
    ws = workspace(B, T, D, H, Yn, 1, params.dtype, params.dtype)
    W_ihT, W_hhT = transposed(params)
    out = kernels.predict_outputs(params.arrays(), W_ihT, W_hhT, ws, X, code, row_group(B, numba.get_num_threads()))
    return out[-1].copy() if code == kernels.REGRESSION else out.transpose(1, 0, 2).copy()


def threading_layer() -> str:
    """Numba's threading layer; it is chosen when the first parallel function runs."""
    try:
        return numba.threading_layer()
    except ValueError:
        kernels.lstm_forward(*(np.zeros((1, 4)),) * 2, np.zeros(4), np.zeros((1, 1, 1)), 1, 1,
                       np.zeros((2, 1, 1)), np.zeros((2, 1, 1)), np.zeros((1, 1, 4)), np.zeros((1, 1, 1)))
        # (running any parallel kernel, here on a 1-unit model, makes Numba choose its layer)
        return numba.threading_layer()


def is_available() -> str | None:
    """Numba's CPU target runs wherever Numba is installed."""
    return None


def describe() -> dict:
    """Facts about this backend for results files (the machine's own facts are reports.machine's)."""
    return {"backend": "numba_cpu", "numba": numba.__version__, "numpy": np.__version__,
            "threads": numba.get_num_threads(), "max_threads": numba.config.NUMBA_NUM_THREADS,
            "threading_layer": threading_layer()}
