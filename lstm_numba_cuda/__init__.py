"""lstm_numba_cuda: the LSTM of lstm_numpy in hand-written Numba CUDA kernels, data resident on the device.

Kernel versions (``TrainConfig(kernel_version=N)``; ``loss_and_grads`` and ``predict`` take
``kernel_version=N`` too); a version keeps its number for life. Launches per minibatch of T steps:

    1  one kernel per operation per time step: device gather of the minibatch, the input
       projection for all T as one tiled shared-memory matmul, per step a recurrent matmul
       and an elementwise gate kernel; backward: per step a gate-backward kernel and a
       matmul for dh; then matmuls/column sums for the weight gradients; loss, clip scale
       and SGD as kernels.                                             4T + 10 launches
       run: train(params, data, TrainConfig(..., kernel_version=1))
    2  fused step kernels: one launch per step does the recurrent product, the gate
       activations and the state update (backward likewise), one fused head kernel, one
       weight-gradient pass after the time loop; loss, clip scale, SGD.  2T + 5 launches
       run: train(params, data, TrainConfig(..., kernel_version=2))
    3  (default, provisional: chosen by launch count until gpu_check times the versions on a GPU) persistent kernel: one launch, one block per sample, runs the whole forward
       pass, the head and BPTT with the time loop inside the kernel (h, c, gates in shared
       memory); a second launch computes the weight gradients, the loss, the global norm and
       clip scale (deterministic last-block reduction) and applies SGD.  2 launches
       run: train(params, data, TrainConfig(...))   or kernel_version=3
       Known costs, not yet measured on a GPU: every block re-reads W_hh (4H, H) each step
       (no reuse across samples), the gradient pass sums T*B terms per parameter without
       shared-memory tiling, and the SGD update runs in the last block alone.
    Per epoch on top: 1 epoch-begin launch, the validation forward (v3: 1 launch; v1/v2: per
    chunk of batch_size rows, 2T + 3 or T + 1) and 1 validation-loss launch; 1 h2d, 1 d2h.

Check and time every version on a GPU:  python -m reports.gpu_check --out DIR
Without a GPU (Numba's CUDA simulator, tiny sizes):
    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=. python -m pytest tests/test_numba_cuda.py

Entry points are those of lstm_numpy (see its docstring); ``predict`` also takes kernel_version.
"""
from lstm_numpy import Params, init_params
from lstm_numpy.contract import train_with

from .device import NO_GPU_MESSAGE, is_available, simulator_enabled
from .trainer import DEFAULT_KERNEL_VERSION, KERNEL_VERSIONS, CudaTrainer, loss_and_grads, make_trainer, predict


def train(params, data, config, progress=None):
    """Train on the device; the epoch loop is lstm_numpy's ``train_with``."""
    return train_with(make_trainer, params, data, config, progress)


def describe() -> dict:
    """Facts about this backend for results files: device, compute capability, memory, simulator, versions."""
    import numba

    from .device import cuda_version_string, device_facts
    return {"backend": "numba_cuda", **device_facts(), "numba": numba.__version__,
            "numba_cuda": cuda_version_string(), "default_kernel_version": DEFAULT_KERNEL_VERSION,
            "kernel_versions": {str(k): v for k, v in KERNEL_VERSIONS.items()}}


__all__ = ["KERNEL_VERSIONS", "DEFAULT_KERNEL_VERSION", "NO_GPU_MESSAGE", "CudaTrainer", "Params", "describe",
           "init_params", "is_available", "loss_and_grads", "make_trainer", "predict", "simulator_enabled", "train"]
