"""pytest-benchmark timings: one training epoch per backend and workload, and the machine's matmul rate.

    python -m pytest tests/benchmarks --benchmark-enable                       # time them
    python -m pytest tests/benchmarks --benchmark-enable --benchmark-autosave  # ... and save to .benchmarks/
    pytest-benchmark compare 0001 0002                                         # compare two saved runs

The ordinary ``python -m pytest`` runs each benchmark once with timing disabled (pyproject's
addopts has --benchmark-disable), on smaller sizes, so the suite cannot rot and stays fast.

Honest timings: the trainer is built (data and weights copied to where the backend keeps them)
and one epoch is run before timing starts, so JIT compilation and the first touch of memory
are excluded; ``run_epoch`` returns the minibatch losses as host arrays, so GPU work is
finished (synchronised) when the timer stops. Every backend gets the same initial weights and
the same sample order. Benchmarks are grouped by workload; ``extra_info`` records the sizes,
threads, device and the FLOP count of an epoch. A backend that cannot run here (or only on
Numba's CUDA simulator, whose timings mean nothing) is skipped with the reason.
"""
from __future__ import annotations

import numpy as np
import pytest

from data import make_workload
from lstm_numpy.backends import BACKENDS
from lstm_numpy.contract import check_data, epoch_orders
from lstm_numpy.flops import epoch_flops
from reports import census

# The timed sizes. "heavy" is reduced to a quarter of its windows (N=1024 instead of 4096,
# still T=32, H=128, B=128) so a NumPy round takes seconds, not tens of seconds.
TIMED = {"seed": {}, "light": {}, "heavy": {"samples": 1024}}
# With --benchmark-disable (the ordinary test run) each runs once: keep that quick.
UNTIMED = {"seed": {}, "light": {}, "heavy": {"samples": 256, "hidden": 32, "batch_size": 64}}
MATMUL_N = 2048


@pytest.fixture(scope="module")
def statuses():
    return {name: census.backend_status(name) for name in BACKENDS}


@pytest.mark.parametrize("workload_name", list(TIMED))
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_epoch(benchmark, statuses, backend, workload_name):
    status = statuses[backend]
    if status.reason is not None:
        pytest.skip(f"{backend} cannot run here: {status.reason}")
    if status.simulator:
        pytest.skip(f"{backend} would run on Numba's CUDA simulator here; simulator timings mean nothing")
    sizes = UNTIMED if benchmark.disabled else TIMED
    workload = make_workload(workload_name, **sizes[workload_name])
    config = workload.config
    params = workload.initial_params()
    data = check_data(params, workload.data, config.task)
    order = epoch_orders(len(data.X_train), 1, config.seed)[0]
    trainer = status.module.make_trainer(params, data, config)
    trainer.run_epoch(order)                       # warm-up: JIT compilation and first touch, not timed

    shapes = workload.shapes
    benchmark.group = f"workload {workload_name}"
    benchmark.extra_info.update(
        backend=backend, workload=workload_name, task=config.task, dtype=str(params.dtype), **shapes,
        threads=trainer.stats.get("threads"), device=trainer.stats.get("device"),
        compute_capability=trainer.stats.get("compute_capability"),
        kernel_version=trainer.stats.get("kernel_version"),
        flops_per_epoch=epoch_flops(shapes, config.task))
    losses, valid_loss = benchmark(trainer.run_epoch, order)
    assert np.all(np.isfinite(losses)) and np.isfinite(valid_loss)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_matmul_reference(benchmark, dtype):
    """The machine's reference rate: NumPy's 2048 x 2048 matmul (2 n^3 FLOP) in each dtype."""
    n = 128 if benchmark.disabled else MATMUL_N
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b                                           # warm-up: BLAS threads started
    benchmark.group = "reference: numpy matmul"
    benchmark.extra_info.update(n=n, dtype=dtype, flop=2 * n**3)
    product = benchmark(np.matmul, a, b)
    assert product.shape == (n, n)
