"""Device-resident training: the CudaTrainer runs whichever kernel version the registry names.

Letters: B minibatch rows, T time steps, D input features, H hidden units, Y outputs, N samples.

Everything lives on the device from ``make_trainer`` on: parameters, gradients, the training
and validation data, the caches (``version_base.DeviceRun``). An epoch uploads the sample order
(one h2d) and brings back one array holding every minibatch loss and the validation loss (one
d2h). Minibatches read their rows through ``order[off + b]``, so no gathered copy of the data is
needed (v1 gathers one on the device, on purpose). What a version provides and how to add one:
``version_base``; the list of versions: the package docstring.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from parallel_lstm.lstm_numpy.contract import BACKWARD, Dataset, TrainConfig, check_batch, check_data, check_phase
from parallel_lstm.lstm_numpy.errors import UserError
from parallel_lstm.lstm_numpy.params import Params, check_dtype

from .device import Launcher, device_facts, require_device
from .device_code import BLOCK, blocks
from .v1 import OneKernelPerOperation
from .v2 import FusedStepKernels
from .v3 import PersistentKernel
from .v4 import UnitSlices
from .version_base import DeviceRun, KernelVersion

# Numbered for life; a new version is one file and one entry here.
KERNEL_VERSIONS: dict[int, type[KernelVersion]] = {
    1: OneKernelPerOperation,
    2: FusedStepKernels,
    3: PersistentKernel,
    4: UnitSlices,
}
DEFAULT_KERNEL_VERSION = 3   # until gpu_check times the versions on an H200 (README: how the default is chosen)


def check_version(version: int | None) -> int:
    version = DEFAULT_KERNEL_VERSION if version is None else version
    if version not in KERNEL_VERSIONS:
        raise UserError(f"unknown kernel_version {version!r}; choose one of {', '.join(map(str, KERNEL_VERSIONS))}.")
    return int(version)


class CudaTrainer:
    """The Trainer of lstm_numpy.contract on the GPU (or the simulator); see the module docstring.

    ``run`` holds the device arrays, ``version`` the kernel version's launch sequence; ``stats`` the
    kernel version, the launch and transfer counts of the last epoch and the device.
    """

    def __init__(self, params: Params, data: Dataset, config: TrainConfig):
        require_device()
        version_class = KERNEL_VERSIONS[check_version(config.kernel_version)]
        dtype = check_dtype(params.dtype)
        data = check_data(params, data, config.task)
        version_class.check_sizes(*params.sizes, dtype)   # before anything is allocated or launched
        self.launcher = Launcher()
        self.run = DeviceRun(params, data, config, self.launcher)
        self.version = version_class(self.run)
        self.run.epoch_begin()
        self.stats = {"kernel_version": version_class.number, **device_facts(),
                      "launches_per_epoch": None, "h2d_per_epoch": None, "d2h_per_epoch": None,
                      "setup_launches": self.launcher.launches, "setup_h2d": self.launcher.h2d}

    def run_epoch(self, order: np.ndarray, upto: str = "update") -> tuple[np.ndarray, float]:
        """Train one epoch on ``order`` (N_train,); returns the minibatch losses (n_batches,) and the valid loss."""
        phase = check_phase(upto)
        run, L = self.run, self.launcher
        order = np.asarray(order)
        if order.shape != (run.n_train,):
            raise UserError(f"the epoch order must have shape ({run.n_train},), got {order.shape}.")
        before = L.counts()
        L.upload(run.train.order, order.astype(np.int64))
        run.epoch_begin()
        for k in range(run.n_batches):
            start, stop = int(run.bounds[k]), int(run.bounds[k + 1])
            self.version.minibatch(k, start, stop - start, phase)
        self.version.validate()
        out = L.to_host(run.state.losses)
        launches, h2d, d2h = (now - then for now, then in zip(L.counts(), before))
        self.stats.update(launches_per_epoch=launches, h2d_per_epoch=h2d, d2h_per_epoch=d2h,
                          minibatches_per_epoch=run.n_batches)
        return out[:-1].copy(), float(out[-1])

    def host_params(self) -> Params:
        return Params(*(self.launcher.to_host(a) for a in self.run.params))

    def host_grads(self) -> Params:
        return Params(*(self.launcher.to_host(a) for a in self.run.grads))

    def host_caches(self, nrows: int) -> dict:
        """Host copies of the caches of the ``nrows`` workspace (tests compare them with the reference)."""
        return {name: self.launcher.to_host(a) for name, a in self.version.workspace(nrows).compared().items()}


def make_trainer(params: Params, data: Dataset, config: TrainConfig) -> CudaTrainer:
    """A device-resident trainer (raises UserError with the no-GPU sentence when CUDA cannot run here)."""
    return CudaTrainer(params, data, config)


def _one_batch_trainer(params: Params, X, Y, task: str, kernel_version) -> CudaTrainer:
    X = np.asarray(X, dtype=params.dtype)
    data = Dataset(X, np.asarray(Y), X[:1], np.asarray(Y)[:1])
    config = TrainConfig(task=task, epochs=1, batch_size=X.shape[0], kernel_version=kernel_version)
    trainer = CudaTrainer(params, data, config)
    trainer.launcher.upload(trainer.run.train.order, np.arange(X.shape[0], dtype=np.int64))
    return trainer


def loss_and_grads(params: Params, X, Y, task: str, kernel_version: int | None = None) -> tuple[float, Params]:
    """Loss and gradients for one batch, computed by the kernels of ``kernel_version``.

    X (B, T, D); Y (B, Y) for regression, (B, T) int for classification.
    """
    X, Y = check_batch(params, X, Y, task)
    trainer = _one_batch_trainer(params, X, Y, task, kernel_version)
    trainer.version.minibatch(0, 0, trainer.run.n_train, BACKWARD)
    loss = float(trainer.launcher.to_host(trainer.run.state.losses)[0])
    return loss, trainer.host_grads()


def predict(params: Params, X, task: str = "regression", kernel_version: int | None = None) -> np.ndarray:
    """Regression: predictions (B, Y). Classification: class probabilities (B, T, Y)."""
    X, _ = check_batch(params, X, None, task)
    B, T, _ = X.shape
    dummy_targets = (np.zeros((B, params.sizes[2]), params.dtype) if task == "regression"
                     else np.zeros((B, T), np.int64))
    trainer = _one_batch_trainer(params, X, dummy_targets, task, kernel_version)
    run = trainer.run
    ws = trainer.version.forward(run.train)
    pred = cuda.device_array((B, T, params.sizes[2]), params.dtype)
    trainer.launcher.launch(run.shared.head_predict, blocks(B, BLOCK), BLOCK, run.task, run.params, ws.caches.h, pred)
    out = trainer.launcher.to_host(pred)
    return out[:, 0, :] if task == "regression" else out


__all__ = ["KERNEL_VERSIONS", "DEFAULT_KERNEL_VERSION", "CudaTrainer", "make_trainer", "loss_and_grads", "predict",
           "check_version"]
