"""lstm_numba_cuda: the LSTM of lstm_numpy in hand-written Numba CUDA kernels, data resident on the device.

The package is shared device code, one file per kernel version, the trainer and the device wrapper:

    device_code.py   device functions every version uses (cell, heads, reductions, flat parameter
                     indexing), the shared kernels, the per-dtype build and the launch geometry
    arguments.py     the named argument groups kernels take and the kinds that declare their arguments
    v1.py ... v4.py  one kernel version each: its kernels and its launch sequence
    version_base.py  what versions share on the host (device-resident run, workspaces, the interface)
    trainer.py       the registry of versions and the CudaTrainer that runs one
    device.py        GPU or simulator detection and the launcher that counts every launch and copy
    ptx_check.py     compiles every kernel of every version for a real GPU, without one, and reports
                     each build's registers, spills, shared memory and occupancy (--json, --table)
    napkin.py        the napkin model: each version's FLOPs, bytes, launches and predicted epoch on an H200
    h200.py          the H200's limits and occupancy rules that ptx_check and napkin compute with

Kernel versions (``TrainConfig(kernel_version=N)``; ``loss_and_grads`` and ``predict`` take
``kernel_version=N`` too); a version keeps its number for life. Launches per minibatch of T steps:

    1  one kernel per operation per time step: gather, tiled matmuls, elementwise gates  4T + 10
    2  fused step kernels: one launch per step forward and backward, one gradient pass   2T + 5
    3  (default, provisional: chosen by launch count until gpu_check times the versions on a GPU)
       persistent kernel, one block per sample runs forward + BPTT; then one launch for
       gradients, loss, clip scale and SGD                                                 2
    4  hidden units split over the blocks, each keeping its W_hh slice (the 4 gate rows of its
       units) in shared memory, several samples per block, coalesced tiled products, h_{t-1}
       exchanged through global memory; weight gradients as a tiled product summed in a fixed
       order, the global norm and SGD spread over the grid. On a GPU one cooperative launch
       per minibatch (grid-wide barriers between steps; per-step launches when the grid cannot
       be resident at once), on the simulator per-step launches                1 (GPU) or 2T + 5
       Shared memory bounds H: at most 2,492 in float32 and 1,214 in float64 (beyond: a UserError
       that names v2).
    run: train(params, data, TrainConfig(..., kernel_version=N))   (each file's docstring says more)
    Per epoch on top: 1 epoch-begin launch, the validation forward (v3: 1 launch; v1/v2: per
    chunk of batch_size rows, 2T + 3 or T + 1; v4: per chunk 1, or T + 1 per step) and 1
    validation-loss launch; 1 h2d, 1 d2h.

Which version should be fastest where (napkin.py's model, a lower bound; not yet measured: the default
stays v3 until gpu_check has timed the versions on an H200, and the README says how it will be chosen):
    seed, light (H <= 50, B <= 16): launch-bound; v4 (one launch per minibatch, 2T + 3 grid barriers)
       and v3 (two launches, block-local barriers only) within the model's error, near 1 ms per light epoch.
    heavy (T=32, H=128, B=128): v3 (34 ms) a little ahead of v4 (42 ms): v4's 128 blocks of 4 warps fill a
       quarter of the GPU and each re-reads every sample's dz (4H values) at every backward step, about
       the bytes of v3's W_hh re-reads; v1 and v2 are bound by their per-step launches (130 ms).
    gpu (T=64, H=512, B=512): v4 (2.7 s in float32 on the 256 blocks its 172 registers let be resident):
       v3 and v2 re-read all of W_hh from L2 for each of 512 rows at every step (10 s), v1's 16x16 tiles
       cost two shared loads per FMA (3.8 s).

Check and time every version on a GPU:  parallel-lstm gpu-check --out DIR [--max-seconds 420]
Predict every version's epoch, no GPU:  NUMBA_ENABLE_CUDASIM=0 parallel-lstm napkin
Compile every kernel for sm_90 without a GPU:  NUMBA_ENABLE_CUDASIM=0 parallel-lstm ptx-check
Without a GPU (Numba's CUDA simulator, tiny sizes):
    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_numba_cuda.py    # after pip install -e .

Entry points are those of lstm_numpy (see its docstring); ``predict`` also takes kernel_version.
"""
from parallel_lstm.lstm_numpy import Params, init_params
from parallel_lstm.lstm_numpy.contract import train_with

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
            "kernel_versions": {str(k): v.description for k, v in KERNEL_VERSIONS.items()}}


__all__ = ["KERNEL_VERSIONS", "DEFAULT_KERNEL_VERSION", "NO_GPU_MESSAGE", "CudaTrainer", "Params", "describe",
           "init_params", "is_available", "loss_and_grads", "make_trainer", "predict", "simulator_enabled", "train"]
