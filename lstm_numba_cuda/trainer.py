"""Device-resident training with the numbered kernel versions (see the package docstring).

Letters: B minibatch rows, T time steps, D input features, H hidden units, Y outputs, N samples.

Everything lives on the device from ``make_trainer`` on: parameters, gradients, the
training and validation data, the caches. An epoch uploads the sample order (one
h2d) and brings back one array holding every minibatch loss and the validation
loss (one d2h). Minibatches read their rows through ``order[off + b]``, so no
gathered copy of the data is needed (v1 gathers one on the device, on purpose).
"""
from __future__ import annotations


import numba
import numpy as np
from numba import cuda

from lstm_numpy.errors import UserError
from lstm_numpy.params import Params, check_dtype
from lstm_numpy.contract import PHASES, Dataset, TrainConfig, batch_bounds, check_data, check_phase

from . import kernels as kern
from .device import Launcher, device_facts, require_device

# Numbered for life; how each runs and its launch counts: see the package docstring.
KERNEL_VERSIONS = {
    1: "one kernel per operation per time step (tiled shared-memory matmuls, elementwise gate kernels)",
    2: "fused step kernels (recurrent product + activations + state update per launch), one weight-gradient pass",
    3: "persistent kernel (one block per sample runs forward + BPTT) + one gradient/norm/SGD launch",
}
DEFAULT_KERNEL_VERSION = 3   # fewest launches; not yet timed against v2 on a real GPU

_FLOAT_TYPES = {np.dtype(np.float64): numba.float64, np.dtype(np.float32): numba.float32}


def _blocks(n: int, per_block: int) -> int:
    return max(1, -(-n // per_block))


SHARED_MEMORY_LIMIT = 48 * 1024   # bytes of dynamic shared memory a launch gets without opting in


def persistent_shared_bytes(H: int, Y: int, dtype) -> int:
    """v3 keeps h, c, the gates (4H) and the head outputs of one sample in shared memory."""
    return (6 * H + Y) * np.dtype(dtype).itemsize


def check_version(version: int | None) -> int:
    version = DEFAULT_KERNEL_VERSION if version is None else version
    if version not in KERNEL_VERSIONS:
        raise UserError(f"unknown kernel_version {version!r}; choose one of {', '.join(map(str, KERNEL_VERSIONS))}.")
    return int(version)


class Workspace:
    """Device caches for minibatches of ``nrows`` rows (time-major, shapes as in kernels.py).

    One per distinct minibatch size (the full one, the last one, validation chunks), so that
    every 2-D view a v1 matmul needs is a contiguous reshape.
    """

    def __init__(self, launcher: Launcher, K, nrows: int, T: int, D: int, H: int, Y: int, dtype, version: int):
        def zeros(*shape):
            array = cuda.device_array(shape, dtype)
            flat = array.reshape(-1)
            launcher.launch(K.fill, _blocks(flat.shape[0], kern.BLOCK), kern.BLOCK, flat, 0.0)
            return array

        self.nrows = nrows
        self.gates = zeros(T, nrows, 4 * H)
        self.c = zeros(T + 1, nrows, H)          # c[0] = 0 stays zero: no kernel writes it
        self.h = zeros(T + 1, nrows, H)          # h[0] likewise
        self.tanh_c = zeros(T, nrows, H)
        self.dz = zeros(T, nrows, 4 * H)
        self.dout = zeros(T, nrows, Y)           # regression uses dout[T-1] only
        self.rowloss = zeros(nrows)
        self.dc_next = zeros(nrows, H)
        if version in (1, 2):
            self.dh_head = zeros(T, nrows, H)
        if version == 1:
            self.Xb = zeros(T, nrows, D)
            self.xproj = zeros(T, nrows, 4 * H)
            self.dh_next = zeros(nrows, H)
            # 2-D views the matmuls use, made once (a view per launch would cost host time)
            self.Xb_rows = self.Xb.reshape(T * nrows, D)
            self.xproj_rows = self.xproj.reshape(T * nrows, 4 * H)
            self.dz_rows = self.dz.reshape(T * nrows, 4 * H)
            self.h_prev_rows = self.h[:T].reshape(T * nrows, H)
            self.h_next_rows = self.h[1:].reshape(T * nrows, H)
            self.dout_rows = self.dout.reshape(T * nrows, Y)
            self.h_at = [self.h[t] for t in range(T + 1)]
            self.gates_at = [self.gates[t] for t in range(T)]
            self.xproj_at = [self.xproj[t] for t in range(T)]
            self.dz_at = [self.dz[t] for t in range(T)]
            self.dout_last = self.dout[T - 1]


class CudaTrainer:
    """The Trainer of lstm_numpy.contract on the GPU (or the simulator); see the module docstring.

    ``stats`` holds the kernel version, the launch and transfer counts of the last epoch and the device.
    """

    def __init__(self, params: Params, data: Dataset, config: TrainConfig):
        require_device()
        self.version = check_version(config.kernel_version)
        self.dtype = check_dtype(params.dtype)
        self.config = config
        data = check_data(params, data, config.task)
        self.K = kern.build_kernels(_FLOAT_TYPES[self.dtype])
        self.launcher = L = Launcher()
        self.D, self.H, self.Y = params.sizes
        if self.version == 3 and persistent_shared_bytes(self.H, self.Y, self.dtype) > SHARED_MEMORY_LIMIT:
            raise UserError(f"kernel_version 3 keeps one sample's state in shared memory, "
                            f"{persistent_shared_bytes(self.H, self.Y, self.dtype)} bytes for H={self.H} in "
                            f"{self.dtype}, over the {SHARED_MEMORY_LIMIT}-byte limit; use kernel_version 2 "
                            f"or a smaller H.")
        self.T = data.X_train.shape[1]
        self.task = kern.REGRESSION if config.task == "regression" else kern.CLASSIFICATION
        self.n_train = data.X_train.shape[0]
        self.n_valid = data.X_valid.shape[0]
        self.n_params = sum(a.size for a in params.arrays())
        self.bounds = batch_bounds(self.n_train, config.batch_size)
        self.n_batches = self.bounds.size - 1

        self.params = [L.to_device(a) for a in params.arrays()]
        self.grads = [cuda.device_array(a.shape, self.dtype) for a in params.arrays()]
        self.X_train, self.Y_train = L.to_device(data.X_train), L.to_device(data.Y_train)
        self.X_valid, self.Y_valid = L.to_device(data.X_valid), L.to_device(data.Y_valid)
        self.valid_order = L.to_device(np.arange(self.n_valid, dtype=np.int64))
        self.order = cuda.device_array(self.n_train, np.int64)
        self.epoch_out = cuda.device_array(self.n_batches + 1, np.float64)   # minibatch losses, then valid loss
        self.status = cuda.device_array(1, np.int32)       # 1 once a minibatch loss was not finite
        self.counter = cuda.device_array(1, np.int32)      # v3 finish: last-block ticket
        self.scale = cuda.device_array(1, self.dtype)      # clip scale of the current minibatch
        self.partial = cuda.device_array(_blocks(self.n_params, kern.REDUCE_THREADS), self.dtype)
        self.valid_rowloss = cuda.device_array(self.n_valid, self.dtype)
        self.persistent_threads = kern.PERSISTENT_THREADS   # v3 is correct for any block size (tests vary it)
        self.workspaces: dict[int, Workspace] = {}
        sizes = set(np.diff(self.bounds).tolist())
        if self.version != 3:   # v1/v2 validate in chunks of batch_size rows
            sizes |= set(np.diff(batch_bounds(self.n_valid, config.batch_size)).tolist())
        for size in sorted(sizes):   # all allocated now, so no epoch pays for (or counts) an allocation
            self.workspace(size)
        self._epoch_begin()
        self.stats = {"kernel_version": self.version, **device_facts(),
                      "launches_per_epoch": None, "h2d_per_epoch": None, "d2h_per_epoch": None,
                      "setup_launches": L.launches, "setup_h2d": L.h2d}

    # ------------------------------------------------------------------ helpers

    def workspace(self, nrows: int) -> Workspace:
        if nrows not in self.workspaces:
            self.workspaces[nrows] = Workspace(self.launcher, self.K, nrows, self.T, self.D, self.H, self.Y,
                                               self.dtype, self.version)
        return self.workspaces[nrows]

    def _epoch_begin(self):
        self.launcher.launch(self.K.epoch_begin, _blocks(self.n_batches + 1, kern.BLOCK), kern.BLOCK,
                             self.epoch_out, self.status, self.counter)

    def _denominator(self, nrows: int) -> float:
        """The loss is a mean over B*Y (regression) or B*T (classification) terms."""
        return float(nrows * (self.Y if self.task == kern.REGRESSION else self.T))

    # ------------------------------------------------------------------ one epoch

    def run_epoch(self, order: np.ndarray, upto: str = "update") -> tuple[np.ndarray, float]:
        """Train one epoch on ``order`` (N_train,); returns the minibatch losses (n_batches,) and the valid loss."""
        check_phase(upto)
        order = np.asarray(order)
        if order.shape != (self.n_train,):
            raise UserError(f"the epoch order must have shape ({self.n_train},), got {order.shape}.")
        phase = PHASES.index(upto)
        L = self.launcher
        before = L.counts()
        L.upload(self.order, order.astype(np.int64))
        self._epoch_begin()
        for k in range(self.n_batches):
            start, stop = int(self.bounds[k]), int(self.bounds[k + 1])
            self.minibatch(k, start, stop - start, phase)
        self.validate()
        out = L.to_host(self.epoch_out)
        launches, h2d, d2h = (now - then for now, then in zip(L.counts(), before))
        self.stats.update(launches_per_epoch=launches, h2d_per_epoch=h2d, d2h_per_epoch=d2h,
                          minibatches_per_epoch=self.n_batches)
        return out[:-1].copy(), float(out[-1])

    def minibatch(self, k: int, off: int, nrows: int, phase: int) -> None:
        """Forward (+ loss into epoch_out[k]), then BPTT (phase >= 1), then SGD (phase 2), all on the device."""
        ws = self.workspace(nrows)
        if self.version == 3:
            self._minibatch_v3(ws, k, off, nrows, phase)
            return
        self.forward(ws, self.X_train, self.Y_train, self.order, off, nrows, ws.rowloss, 0, with_grad=phase >= 1)
        if phase >= 1:
            if self.version == 1:
                self._backward_v1(ws, nrows)
            else:
                self._backward_v2(ws, off, nrows)
        self._loss_and_update(ws, k, nrows, phase)

    def validate(self) -> None:
        """The validation loss into epoch_out[-1], from the current parameters (never updates them)."""
        L, K = self.launcher, self.K
        if self.version == 3:
            ws = self.workspace(int(self.bounds[1]))
            self._persistent(ws, self.X_valid, self.Y_valid, self.valid_order, 0, self.n_valid, 0,
                             self.valid_rowloss)
        else:
            step = self.config.batch_size
            for off in range(0, self.n_valid, step):
                nrows = min(step, self.n_valid - off)
                self.forward(self.workspace(nrows), self.X_valid, self.Y_valid, self.valid_order, off, nrows,
                             self.valid_rowloss, off, with_grad=False)
        L.launch(K.loss_reduce, 1, kern.REDUCE_THREADS, self.valid_rowloss, self.n_valid,
                 self._denominator(self.n_valid), self.epoch_out, self.n_batches, self.status, 0, 1)

    # ------------------------------------------------------------------ v1 and v2

    def forward(self, ws: Workspace, X, targets, order, off: int, nrows: int, rowloss, row_off: int,
                with_grad: bool) -> None:
        """Forward over T steps and the head (v1, v2; v3 for predict): fills ws caches and rowloss."""
        L, K, T, H = self.launcher, self.K, self.T, self.H
        p = self.params
        if self.version == 1:
            dummy_vec, dummy_mat = p[2], p[1]   # placeholders for unused bias/addend arguments
            L.launch(K.gather_x, _blocks(T * nrows * self.D, kern.BLOCK), kern.BLOCK, X, order, off, nrows, ws.Xb)
            # the input projection does not depend on h: all T steps in one launch
            self._matmul(ws.Xb_rows, 0, p[0], 1, ws.xproj_rows, p[2], 1, dummy_mat, 0)
            for t in range(T):
                self._matmul(ws.h_at[t], 0, p[1], 1, ws.gates_at[t], dummy_vec, 0, ws.xproj_at[t], 1)
                L.launch(K.gates_forward, _blocks(nrows * H, kern.BLOCK), kern.BLOCK,
                         ws.gates, ws.c, ws.h, ws.tanh_c, t, nrows)
        elif self.version == 2:
            for t in range(T):
                L.launch(K.step_forward, (_blocks(H, kern.BLOCK), nrows), kern.BLOCK,
                         X, order, off, nrows, t, p[0], p[1], p[2], ws.gates, ws.c, ws.h, ws.tanh_c)
        else:
            self._persistent(ws, X, targets, order, off, nrows, 1, rowloss, row_off)
            return
        L.launch(K.head_rows, _blocks(nrows, kern.BLOCK), kern.BLOCK, ws.h, p[3], p[4], targets, order, off,
                 nrows, T, self.task, 1 if with_grad else 0, ws.dout, ws.dh_head, rowloss, row_off)

    def _matmul(self, A, trans_a, B, trans_b, C, bias, use_bias, addend, use_addend):
        M, N = C.shape
        grid = (_blocks(N, kern.TILE), _blocks(M, kern.TILE))
        self.launcher.launch(self.K.matmul, grid, (kern.TILE, kern.TILE),
                             A, trans_a, B, trans_b, C, bias, use_bias, addend, use_addend)

    def _backward_v1(self, ws: Workspace, nrows: int) -> None:
        L, K, T, H = self.launcher, self.K, self.T, self.H
        p, g = self.params, self.grads
        dummy_vec, dummy_mat = p[2], p[1]
        for t in range(T - 1, -1, -1):
            L.launch(K.gates_backward, _blocks(nrows * H, kern.BLOCK), kern.BLOCK,
                     ws.gates, ws.c, ws.tanh_c, ws.dh_head, ws.dh_next, ws.dc_next, ws.dz, t, T, nrows)
            if t > 0:   # backprop z = ... + W_hh h_prev: dh_next (B, H) = dz[t] (B, 4H) @ W_hh (4H, H)
                self._matmul(ws.dz_at[t], 0, p[1], 0, ws.dh_next, dummy_vec, 0, dummy_mat, 0)
        self._matmul(ws.dz_rows, 1, ws.Xb_rows, 0, g[0], dummy_vec, 0, dummy_mat, 0)        # dW_ih = dz^T X
        self._matmul(ws.dz_rows, 1, ws.h_prev_rows, 0, g[1], dummy_vec, 0, dummy_mat, 0)    # dW_hh = dz^T h_prev
        L.launch(K.colsum, _blocks(4 * H, kern.BLOCK), kern.BLOCK, ws.dz_rows, g[2])         # db
        if self.task == kern.REGRESSION:
            dout, h_head = ws.dout_last, ws.h_at[T]
        else:
            dout, h_head = ws.dout_rows, ws.h_next_rows
        self._matmul(dout, 1, h_head, 0, g[3], dummy_vec, 0, dummy_mat, 0)                  # dW_y = dout^T h
        L.launch(K.colsum, _blocks(self.Y, kern.BLOCK), kern.BLOCK, dout, g[4])             # db_y

    def _backward_v2(self, ws: Workspace, off: int, nrows: int) -> None:
        L, K, T, H = self.launcher, self.K, self.T, self.H
        for t in range(T - 1, -1, -1):
            L.launch(K.step_backward, (_blocks(H, kern.BLOCK), nrows), kern.BLOCK,
                     ws.gates, ws.c, ws.tanh_c, ws.dh_head, self.params[1], ws.dz, ws.dc_next, t, T, nrows)
        L.launch(K.weight_grads, _blocks(self.n_params, kern.BLOCK), kern.BLOCK, self.X_train, self.order, off,
                 nrows, T, self.task, ws.dz, ws.h, ws.dout, *self.grads)

    def _loss_and_update(self, ws: Workspace, k: int, nrows: int, phase: int) -> None:
        L, K = self.launcher, self.K
        stop = 1 if phase >= 1 else 0   # the reference stops at a non-finite loss only when it trains
        L.launch(K.loss_reduce, 1, kern.REDUCE_THREADS, ws.rowloss, nrows, self._denominator(nrows),
                 self.epoch_out, k, self.status, stop, 0)
        if phase == 2:
            clip = self.config.clip_norm
            L.launch(K.clip_scale, 1, kern.REDUCE_THREADS, *self.grads, 0 if clip is None else 1,
                     0.0 if clip is None else float(clip), self.scale)
            L.launch(K.sgd, _blocks(self.n_params, kern.BLOCK), kern.BLOCK, *self.params, *self.grads,
                     float(self.config.lr), self.scale, self.status)

    # ------------------------------------------------------------------ v3

    def _persistent(self, ws: Workspace, X, targets, order, off: int, nrows: int, mode: int, rowloss,
                    row_off: int = 0) -> None:
        p = self.params
        shared_bytes = persistent_shared_bytes(self.H, self.Y, self.dtype)
        self.launcher.launch(self.K.persistent, nrows, self.persistent_threads, X, targets, order, off, nrows,
                             self.T, self.task, mode, *p, ws.gates, ws.c, ws.h, ws.tanh_c, ws.dz, ws.dout,
                             rowloss, row_off, shared_bytes=shared_bytes)

    def _minibatch_v3(self, ws: Workspace, k: int, off: int, nrows: int, phase: int) -> None:
        """Two launches: the persistent forward+BPTT kernel, then gradients + loss + norm + SGD."""
        self._persistent(ws, self.X_train, self.Y_train, self.order, off, nrows, 2 if phase >= 1 else 0,
                         ws.rowloss)
        clip = self.config.clip_norm
        grid = _blocks(self.n_params, kern.REDUCE_THREADS) if phase >= 1 else 1
        self.launcher.launch(self.K.finish, grid, kern.REDUCE_THREADS, self.X_train, self.order, off, nrows,
                             self.T, self.task, ws.dz, ws.h, ws.dout, ws.rowloss, self._denominator(nrows),
                             self.epoch_out, k, self.status, phase, 0 if clip is None else 1,
                             0.0 if clip is None else float(clip), float(self.config.lr), *self.params,
                             *self.grads, self.partial, self.counter, self.scale)

    # ------------------------------------------------------------------ host copies

    def host_params(self) -> Params:
        return Params(*(self.launcher.to_host(a) for a in self.params))

    def host_grads(self) -> Params:
        return Params(*(self.launcher.to_host(a) for a in self.grads))

    def host_caches(self, nrows: int) -> dict:
        """Host copies of the caches of the ``nrows`` workspace (tests compare them with the reference)."""
        ws = self.workspace(nrows)
        names = ["gates", "c", "h", "tanh_c", "dz", "dout", "rowloss", "dh_head"]
        return {name: self.launcher.to_host(getattr(ws, name)) for name in names if hasattr(ws, name)}


def make_trainer(params: Params, data: Dataset, config: TrainConfig) -> CudaTrainer:
    """A device-resident trainer (raises UserError with the no-GPU sentence when CUDA cannot run here)."""
    return CudaTrainer(params, data, config)


def _one_batch_trainer(params: Params, X, Y, task: str, kernel_version) -> CudaTrainer:
    X = np.asarray(X, dtype=params.dtype)
    data = Dataset(X, np.asarray(Y), X[:1], np.asarray(Y)[:1])
    config = TrainConfig(task=task, epochs=1, batch_size=X.shape[0], kernel_version=kernel_version)
    trainer = CudaTrainer(params, data, config)
    trainer.launcher.upload(trainer.order, np.arange(X.shape[0], dtype=np.int64))
    return trainer


def loss_and_grads(params: Params, X, Y, task: str, kernel_version: int | None = None) -> tuple[float, Params]:
    """Loss and gradients for one batch, computed by the kernels of ``kernel_version``.

    X (B, T, D); Y (B, Y) for regression, (B, T) int for classification.
    """
    trainer = _one_batch_trainer(params, X, Y, task, kernel_version)
    trainer.minibatch(0, 0, trainer.n_train, phase=1)
    loss = float(trainer.launcher.to_host(trainer.epoch_out)[0])
    return loss, trainer.host_grads()


def predict(params: Params, X, task: str = "regression", kernel_version: int | None = None) -> np.ndarray:
    """Regression: predictions (B, Y). Classification: class probabilities (B, T, Y)."""
    X = np.asarray(X, dtype=params.dtype)
    B, T, _ = X.shape
    dummy_targets = (np.zeros((B, params.sizes[2]), params.dtype) if task == "regression"
                     else np.zeros((B, T), np.int64))
    trainer = _one_batch_trainer(params, X, dummy_targets, task, kernel_version)
    ws = trainer.workspace(B)
    trainer.forward(ws, trainer.X_train, trainer.Y_train, trainer.order, 0, B, ws.rowloss, 0, with_grad=False)
    pred = cuda.device_array((B, T, params.sizes[2]), params.dtype)
    trainer.launcher.launch(trainer.K.head_predict, _blocks(B, kern.BLOCK), kern.BLOCK, ws.h, trainer.params[3],
                            trainer.params[4], B, T, trainer.task, pred)
    out = trainer.launcher.to_host(pred)
    return out[:, 0, :] if task == "regression" else out


__all__ = ["KERNEL_VERSIONS", "DEFAULT_KERNEL_VERSION", "CudaTrainer", "make_trainer", "loss_and_grads", "predict",
           "check_version"]
