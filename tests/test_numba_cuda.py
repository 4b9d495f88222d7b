"""The CUDA backend against the reference, on Numba's CUDA simulator when there is no GPU.

Letters: B batch, T time steps, D input features, H hidden units, Y outputs.
Sizes are tiny and deliberately not multiples of the simulator's tiles/blocks
(TILE 4, BLOCK 8): the simulator runs every CUDA thread as a Python thread.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
from numba import cuda

from parallel_lstm import lstm_numpy as ref
from cuda_reference import reference_dout
from parallel_lstm import lstm_numba_cuda as cu
from parallel_lstm.lstm_numba_cuda import device, device_code, v1
from parallel_lstm.lstm_numba_cuda.arguments import EpochState, ParamArrays, SgdSettings
from parallel_lstm.lstm_numba_cuda.trainer import CudaTrainer, _one_batch_trainer
from parallel_lstm.lstm_numpy.checks import assert_same_history
from parallel_lstm.lstm_numpy.model import head_loss_and_grads
from parallel_lstm.lstm_numpy.contract import epoch_orders
from parallel_lstm.lstm_numpy.trainer import NumpyTrainer

VERSIONS = sorted(cu.KERNEL_VERSIONS)
TASKS = ref.TASKS
T_, D_, H_, Y_ = 4, 3, 5, 2          # T, D, H, Y of most tests
N_TRAIN, N_VALID, BATCH = 7, 3, 3     # minibatches of 3, 3 and 1 rows

on_real_gpu = device.gpu_present()
gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not on_real_gpu, reason="needs a real CUDA GPU; CUDA is simulated (or absent) here")


@pytest.fixture(autouse=True, scope="module")
def fast_simulator_thread_switching():
    """The simulator's scheduler busy-polls its Python threads; with the default 5 ms GIL switch
    interval every syncthreads costs milliseconds. A short interval makes this file ~3x faster;
    it changes no result."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(previous)


def make_batch(rng, task, B=3, T=T_, D=D_, Y=Y_, dtype=np.float64):
    X = rng.normal(size=(B, T, D)).astype(dtype)
    if task == "regression":
        return X, rng.normal(size=(B, Y)).astype(dtype)
    return X, rng.integers(0, Y, size=(B, T))


def make_dataset(rng, task, dtype=np.float64):
    X, Y = make_batch(rng, task, B=N_TRAIN + N_VALID, dtype=dtype)
    return ref.Dataset(X[:N_TRAIN], Y[:N_TRAIN], X[N_TRAIN:], Y[N_TRAIN:])


# ---------------------------------------------------------------------------- every kernel, every version

@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("sizes", [(3, T_, D_, H_, Y_), (1, 1, 2, 3, 3)], ids=["B3T4H5", "B1T1H3"])
def test_every_cache_and_gradient_matches_reference(version, task, sizes):
    """One minibatch, forward + BPTT: each kernel's output (gates, c, h, tanh_c, head dout, dh,
    dz, loss, all five gradients) against the reference, with non-zero biases."""
    B, T, D, H, Y = sizes
    rng = np.random.default_rng(10 * version + len(task) + B)
    params = ref.init_params(D, H, Y, seed=version, forget_bias=0.7)
    X, Yt = make_batch(rng, task, B, T, D, Y)
    h, cache = ref.lstm_forward(params, X)
    loss, dh, dW_y, db_y = head_loss_and_grads(params, h, Yt, task)
    ref_loss, ref_grads = ref.loss_and_grads(params, X, Yt, task)

    trainer = _one_batch_trainer(params, X, Yt, task, version)
    trainer.version.minibatch(0, 0, B, phase=1)
    got = trainer.host_caches(B)
    for name in ("gates", "c", "h", "tanh_c"):
        ref.assert_close(f"v{version} {name}", got[name], getattr(cache, name))
    ref.assert_close(f"v{version} dout", got["dout"], reference_dout(params, h, Yt, task))
    if "dh_head" in got:
        ref.assert_close(f"v{version} dh_head", got["dh_head"], dh)
    ref.assert_close(f"v{version} dz", got["dz"], ref.gate_gradients(params, dh, cache))
    denominator = B * (Y if task == "regression" else T)
    ref.assert_close(f"v{version} rowloss", got["rowloss"].sum() / denominator, loss)
    ref.assert_close(f"v{version} loss", trainer.launcher.to_host(trainer.run.state.losses)[0], ref_loss)
    for (name, value), (_, expected) in zip(trainer.host_grads().items(), ref_grads.items()):
        ref.assert_close(f"v{version} d{name}", value, expected)


@pytest.mark.parametrize("threads", [3, 1])
def test_v3_result_does_not_depend_on_the_block_size(threads):
    """The persistent kernel strides by blockDim: odd or single-thread blocks give the same bits."""
    rng = np.random.default_rng(9)
    params = ref.init_params(D_, H_, Y_, seed=2)
    X, Yt = make_batch(rng, "classification")
    results = []
    for block in (device_code.PERSISTENT_THREADS, threads):
        trainer = _one_batch_trainer(params, X, Yt, "classification", 3)
        trainer.version.threads_per_block = block
        trainer.version.minibatch(0, 0, X.shape[0], phase=1)
        results.append((trainer.host_caches(X.shape[0]), trainer.host_grads()))
    (caches, grads), (other_caches, other_grads) = results
    for name in ("h", "c", "gates", "dz", "dout"):
        np.testing.assert_array_equal(other_caches[name], caches[name], err_msg=name)
    for (name, value), (_, expected) in zip(other_grads.items(), grads.items()):
        np.testing.assert_array_equal(value, expected, err_msg=name)


@pytest.mark.parametrize("version", VERSIONS)
def test_loss_and_grads_entry_point(version):
    rng = np.random.default_rng(5)
    params = ref.init_params(D_, H_, Y_, seed=2)
    X, Yt = make_batch(rng, "classification")
    loss, grads = cu.loss_and_grads(params, X, Yt, "classification", kernel_version=version)
    ref_loss, ref_grads = ref.loss_and_grads(params, X, Yt, "classification")
    ref.assert_close("loss", loss, ref_loss)
    for (name, value), (_, expected) in zip(grads.items(), ref_grads.items()):
        ref.assert_close(name, value, expected)


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_v1_tiled_matmul_with_bias_and_addend(trans_a, trans_b):
    """C = op(A) op(B) + bias + addend at sizes that are no multiple of the tile in any dimension."""
    rng = np.random.default_rng(trans_a * 2 + trans_b)
    M, N, K = 5, 7, 9
    A = rng.normal(size=(K, M) if trans_a else (M, K))
    B = rng.normal(size=(N, K) if trans_b else (K, N))
    bias, addend = rng.normal(size=N), rng.normal(size=(M, N))
    kern = v1.kernels(np.float64)
    launcher = device.Launcher()
    dev = [launcher.to_device(a) for a in (A, B, bias, addend)]
    C = cuda.device_array((M, N))
    grid = (-(-N // device_code.TILE), -(-M // device_code.TILE))
    launcher.launch(kern.matmul, grid, (device_code.TILE, device_code.TILE), dev[0], trans_a, dev[1], trans_b, C,
                    dev[2], 1, dev[3], 1)
    expected = (A.T if trans_a else A) @ (B.T if trans_b else B) + bias + addend
    ref.assert_close("C", launcher.to_host(C), expected)


@pytest.mark.parametrize("clip_norm", [None, 0.05])
def test_clip_scale_and_sgd_kernels_match_reference_update(clip_norm):
    rng = np.random.default_rng(3)
    params = ref.init_params(D_, H_, Y_, seed=4)
    grads = ref.Params(*(rng.normal(size=a.shape) for a in params.arrays()))
    expected = params.copy()
    ref.trainer.sgd_update(expected, grads, 0.3, clip_norm)
    kern = device_code.shared_kernels(np.float64)
    launcher = device.Launcher()
    p = ParamArrays(*(launcher.to_device(a) for a in params.arrays()))
    g = ParamArrays(*(launcher.to_device(a) for a in grads.arrays()))
    scale = cuda.device_array(1)
    status = launcher.to_device(np.zeros(1, np.int32))
    state = EpochState(cuda.device_array(1), status, cuda.device_array(1, np.int32), scale, cuda.device_array(1))
    settings = SgdSettings(0.3, 0 if clip_norm is None else 1, clip_norm or 0.0)
    launcher.launch(kern.clip_scale, 1, device_code.REDUCE_THREADS, g, settings, state)
    n = sum(a.size for a in params.arrays())
    launcher.launch(kern.sgd, -(-n // device_code.BLOCK), device_code.BLOCK, p, g, settings, state)
    assert (launcher.to_host(scale)[0] < 1.0) == (clip_norm is not None)
    for (name, value), (_, want) in zip(ref.Params(*(launcher.to_host(a) for a in p)).items(), expected.items()):
        ref.assert_close(name, value, want)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("version", VERSIONS)
def test_predict_matches_reference(version, task):
    rng = np.random.default_rng(8)
    params = ref.init_params(D_, H_, Y_, seed=6)
    X, _ = make_batch(rng, task)
    ref.assert_close("predict", cu.predict(params, X, task, kernel_version=version), ref.predict(params, X, task))


# ---------------------------------------------------------------------------- whole training

def clip_scales_of_first_epoch(params, data, config):
    """The reference's clip scale of each first-epoch minibatch at the initial parameters."""
    order = epoch_orders(N_TRAIN, 1, config.seed)[0]
    bounds = ref.batch_bounds(N_TRAIN, config.batch_size)
    scales = []
    for k in range(bounds.size - 1):
        rows = order[bounds[k]:bounds[k + 1]]
        _, grads = ref.loss_and_grads(params, data.X_train[rows], data.Y_train[rows], config.task)
        scales.append(ref.trainer.clip_scale(grads, config.clip_norm))
    return np.array(scales)


@pytest.mark.parametrize("task,clip_norm", [("regression", None), ("classification", 0.2)])
@pytest.mark.parametrize("version", VERSIONS)
def test_training_matches_reference_float64(version, task, clip_norm):
    """Every epoch's train and valid loss and the final parameters within 1e-10 of the reference."""
    rng = np.random.default_rng(20 + version)
    data = make_dataset(rng, task)
    params = ref.init_params(D_, H_, Y_, seed=1)
    config = ref.TrainConfig(task=task, epochs=2, lr=0.5, batch_size=BATCH, seed=3, clip_norm=clip_norm,
                             kernel_version=version)
    if clip_norm is not None:   # make sure the clipping branch is really taken
        assert (clip_scales_of_first_epoch(params, data, config) < 1).any()
    got, want = cu.train(params, data, config), ref.train(params, data, config)
    assert want.params.dtype == np.float64
    assert_same_history(f"v{version}", got, want)
    assert got.stats["kernel_version"] == version


@pytest.mark.parametrize("version", VERSIONS)
def test_training_matches_reference_float32(version):
    rng = np.random.default_rng(30 + version)
    data = make_dataset(rng, "regression", dtype=np.float32)
    params = ref.init_params(D_, H_, Y_, seed=1, dtype=np.float32)
    config = ref.TrainConfig(task="regression", epochs=2, lr=0.5, batch_size=BATCH, clip_norm=0.3,
                             kernel_version=version)
    got, want = cu.train(params, data, config), ref.train(params, data, config)
    assert want.params.dtype == np.float32
    assert_same_history(f"v{version}", got, want, rtol=1e-4)


@pytest.mark.parametrize("version", VERSIONS)
def test_phases_forward_and_backward_leave_params_unchanged(version):
    rng = np.random.default_rng(40)
    data = make_dataset(rng, "classification")
    params = ref.init_params(D_, H_, Y_, seed=1)
    config = ref.TrainConfig(task="classification", batch_size=BATCH, kernel_version=version)
    order = epoch_orders(N_TRAIN, 1, 0)[0]
    trainer, reference = CudaTrainer(params, data, config), NumpyTrainer(params, data, config)
    for upto in ("forward", "backward"):
        losses, valid = trainer.run_epoch(order, upto)
        want_losses, want_valid = reference.run_epoch(order, upto)
        ref.assert_close(f"{upto} losses", losses, want_losses)
        ref.assert_close(f"{upto} valid", valid, want_valid)
    for (name, value), (_, initial) in zip(trainer.host_params().items(), params.items()):
        np.testing.assert_array_equal(value, initial, err_msg=name)


@pytest.mark.parametrize("version", VERSIONS)
def test_non_finite_loss_stops_updates_like_the_reference(version):
    """A NaN target poisons one minibatch: its loss is NaN, later entries stay NaN, no later update."""
    rng = np.random.default_rng(50)
    data = make_dataset(rng, "regression")
    order = epoch_orders(N_TRAIN, 1, 0)[0]
    data.Y_train[order[BATCH + 1], 0] = np.nan        # in the second minibatch
    params = ref.init_params(D_, H_, Y_, seed=1)
    config = ref.TrainConfig(task="regression", batch_size=BATCH, kernel_version=version)
    losses, valid = CudaTrainer(params, data, config).run_epoch(order)
    want_losses, want_valid = NumpyTrainer(params, data, config).run_epoch(order)
    np.testing.assert_array_equal(np.isnan(losses), [False, True, True])
    np.testing.assert_array_equal(np.isnan(want_losses), np.isnan(losses))
    ref.assert_close("first loss", losses[0], want_losses[0])
    ref.assert_close("valid after the stop", valid, want_valid)
    # train() names the NaN in the data before any epoch instead of reporting a divergence.
    with pytest.raises(ref.UserError, match=rf"Y_train holds nan at index \({order[BATCH + 1]}, 0\)"):
        cu.train(params, data, ref.TrainConfig(task="regression", epochs=1, batch_size=BATCH, seed=0,
                                               kernel_version=version))


# ---------------------------------------------------------------------------- counts and residency

def expected_launches_per_epoch(version, T, n_batches, n_valid_chunks):
    """1 epoch-begin + per minibatch + validation forward + 1 validation loss reduce."""
    cooperative = version == 4 and cu.KERNEL_VERSIONS[4].runs_cooperative()   # v4 on a GPU: one launch
    per_minibatch = {1: 4 * T + 10, 2: 2 * T + 5, 3: 2, 4: 1 if cooperative else 2 * T + 5}[version]
    per_valid_chunk = {1: 2 * T + 3, 2: T + 1, 3: 1, 4: 1 if cooperative else T + 1}[version]
    chunks = 1 if version == 3 else n_valid_chunks   # v3 validates all rows in one launch
    return 1 + per_minibatch * n_batches + per_valid_chunk * chunks + 1


@pytest.mark.parametrize("version", VERSIONS)
def test_launch_and_transfer_counts_per_epoch(version):
    rng = np.random.default_rng(60)
    X, Yt = make_batch(rng, "regression", B=N_TRAIN + 5)
    data = ref.Dataset(X[:N_TRAIN], Yt[:N_TRAIN], X[N_TRAIN:], Yt[N_TRAIN:])   # 5 valid rows: chunks of 3 and 2
    params = ref.init_params(D_, H_, Y_, seed=1)
    trainer = CudaTrainer(params, data, ref.TrainConfig(batch_size=BATCH, kernel_version=version))
    for order in epoch_orders(N_TRAIN, 2, 0):          # the first epoch too: nothing is allocated in an epoch
        trainer.run_epoch(order)
        stats = trainer.stats
        assert stats["h2d_per_epoch"] == 1                  # the order index array
        assert stats["d2h_per_epoch"] == 1                  # every minibatch loss and the valid loss at once
        n_batches = 3
        assert stats["launches_per_epoch"] == expected_launches_per_epoch(version, T_, n_batches, 2)
    if version == 3:
        assert stats["launches_per_epoch"] <= 2 * n_batches + 3
    documented = cu.KERNEL_VERSIONS[version]   # what the version says it launches, held to the same count
    assert (1 + documented.launches_per_minibatch(T_) * n_batches + documented.launches_per_validation(T_, 5, BATCH)
            == stats["launches_per_epoch"])
    for key in ("kernel_version", "launches_per_epoch", "h2d_per_epoch", "d2h_per_epoch", "device",
                "compute_capability", "simulator", "device_memory_bytes"):
        assert key in stats, key
    assert stats["simulator"] == device.simulator_enabled()


def test_launcher_silences_only_the_low_occupancy_warning():
    """One-block reductions are deliberate; any other warning from a launch still surfaces (as an error here)."""
    import re
    assert re.match(device.LOW_OCCUPANCY, "Grid size 1 will likely result in GPU under-utilization due to low occupancy.")
    assert not re.match(device.LOW_OCCUPANCY, "Host array used in CUDA kernel will incur copy overhead to/from device.")


def test_launcher_refuses_host_arrays():
    """Residency: a host array handed to a kernel is an error, on the simulator too
    (which, unlike a GPU, does not even emit Numba's 'Host array used in CUDA kernel' warning)."""
    kern = device_code.shared_kernels(np.float64)
    launcher = device.Launcher()
    with pytest.raises(TypeError, match="host array passed as argument 0 of kernel"):
        launcher.launch(kern.fill, 1, device_code.BLOCK, np.zeros(3), 0.0)
    device_grads = ParamArrays(*(cuda.device_array(a.shape) for a in ref.init_params(D_, H_, Y_).arrays()))
    host_in_group = device_grads._replace(b_y=np.zeros(Y_))     # one host member of an argument group
    settings = SgdSettings(0.1, 0, 0.0)
    with pytest.raises(TypeError, match="host array passed as argument 0 of kernel"):
        launcher.launch(kern.clip_scale, 1, device_code.REDUCE_THREADS, host_in_group, settings, None)
    assert launcher.launches == 0


class WarningKernel:
    """Stands in for a numba-cuda kernel on a GPU: making a launch configuration of few blocks warns."""

    def __init__(self, message):
        self.message = message
        self.configurations = 0
        self.calls = 0

    def __getitem__(self, configuration):
        import warnings

        from numba.cuda.core.errors import NumbaPerformanceWarning
        self.configurations += 1
        warnings.warn(NumbaPerformanceWarning(self.message))
        return self.launch

    def launch(self, *args):
        self.calls += 1


def test_launcher_configures_each_launch_once_and_silences_only_low_occupancy():
    """On a GPU a configuration (kernel, grid, block, shared bytes) is made once and reused, so the
    low-occupancy warning is silenced once per configuration, not per launch; every launch is counted."""
    import warnings
    launcher = device.Launcher(simulated=False)
    kernel = WarningKernel("Grid size 1 will likely result in GPU under-utilization due to low occupancy.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            launcher.launch(kernel, 1, 8, 0.5)
        launcher.launch(kernel, 2, 8, 0.5)
    assert (kernel.configurations, kernel.calls, launcher.launches) == (2, 4, 4)
    other = WarningKernel("Host array used in CUDA kernel will incur copy overhead to/from device.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Exception, match="Host array used in CUDA kernel"):
            launcher.launch(other, 1, 8)
    assert launcher.launches == 4


@gpu
@needs_gpu
@pytest.mark.parametrize("version", VERSIONS)
def test_no_host_array_reaches_a_kernel_on_the_gpu(version):
    """On a real GPU Numba warns when a kernel gets a host array; here that warning is an error
    (numba-cuda's own NumbaPerformanceWarning class, not numba.core's)."""
    import warnings

    from numba.cuda.core.errors import NumbaPerformanceWarning
    rng = np.random.default_rng(70)
    data = make_dataset(rng, "regression")
    params = ref.init_params(D_, H_, Y_, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumbaPerformanceWarning)
        trainer = CudaTrainer(params, data, ref.TrainConfig(batch_size=BATCH, kernel_version=version))
        trainer.run_epoch(epoch_orders(N_TRAIN, 1, 0)[0])


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("version", VERSIONS)
def test_gpu_geometry_matches_reference(version, task, dtype):
    """On a GPU the tiles and blocks are larger (TILE 16, BLOCK 128, 256-thread reductions):
    sizes that cross them, and more parameters than one reduction block holds."""
    rng = np.random.default_rng(80)
    B, T, D, H, Y = 33, 3, 2, 130, 3
    params = ref.init_params(D, H, Y, seed=3, dtype=dtype, forget_bias=0.5)
    X, Yt = make_batch(rng, task, B, T, D, Y, dtype=dtype)
    loss, grads = cu.loss_and_grads(params, X, Yt, task, kernel_version=version)
    ref_loss, ref_grads = ref.loss_and_grads(params, X, Yt, task)
    ref.assert_close("loss", loss, ref_loss)
    for (name, value), (_, expected) in zip(grads.items(), ref_grads.items()):
        ref.assert_close(name, value, expected)


# ---------------------------------------------------------------------------- no GPU, describe, errors

def test_without_gpu_or_simulator_says_how_to_run(monkeypatch):
    monkeypatch.setattr(device, "simulator_enabled", lambda: False)
    monkeypatch.setattr(device, "gpu_present", lambda: False)
    message = cu.is_available()
    assert message is not None and "no CUDA GPU was found" in message and "NUMBA_ENABLE_CUDASIM=1" in message
    assert message.endswith(".") and ". " not in message          # one sentence
    params = ref.init_params(D_, H_, Y_)
    X, Yt = make_batch(np.random.default_rng(0), "regression")
    with pytest.raises(ref.UserError, match="NUMBA_ENABLE_CUDASIM=1"):
        cu.loss_and_grads(params, X, Yt, "regression")
    with pytest.raises(ref.UserError, match="no CUDA GPU"):
        cu.make_trainer(params, ref.Dataset(X, Yt, X, Yt), ref.TrainConfig())


def test_available_here_and_describe():
    assert cu.is_available() is None
    facts = cu.describe()
    for key in ("device", "compute_capability", "device_memory_bytes", "simulator", "numba_cuda",
                "default_kernel_version"):
        assert key in facts, key
    assert facts["simulator"] == device.simulator_enabled()
    assert cu.DEFAULT_KERNEL_VERSION in cu.KERNEL_VERSIONS


def test_bad_phase_and_order_are_user_errors():
    rng = np.random.default_rng(90)
    trainer = CudaTrainer(ref.init_params(D_, H_, Y_), make_dataset(rng, "regression"),
                          ref.TrainConfig(batch_size=BATCH, kernel_version=3))
    with pytest.raises(ref.UserError, match="unknown phase"):
        trainer.run_epoch(np.arange(N_TRAIN), "sideways")
    with pytest.raises(ref.UserError, match="order must have shape"):
        trainer.run_epoch(np.arange(N_TRAIN - 1))


def test_unknown_kernel_version_is_a_user_error():
    params = ref.init_params(D_, H_, Y_)
    X, Yt = make_batch(np.random.default_rng(0), "regression")
    with pytest.raises(ref.UserError, match="unknown kernel_version 7"):
        cu.loss_and_grads(params, X, Yt, "regression", kernel_version=7)


def test_v3_refuses_a_hidden_size_beyond_shared_memory():
    # (6H + Y) * 8 bytes > 48 KiB from H = 1024 in float64; the check runs before anything is launched.
    params = ref.init_params(1, 1024, 1)
    X, Yt = np.zeros((1, 1, 1)), np.zeros((1, 1))
    data = ref.Dataset(X, Yt, X, Yt)
    with pytest.raises(ref.UserError, match="over the 49152-byte limit; use kernel_version 2"):
        CudaTrainer(params, data, ref.TrainConfig(kernel_version=3))


def test_backend_registry_and_reexports():
    assert ref.get_backend("numba_cuda") is cu
    assert cu.Params is ref.Params and cu.init_params is ref.init_params
