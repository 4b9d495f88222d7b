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

Threads, as the user sets them (nothing in tests/conftest.py pins them on a machine of two or more
cores): numba_cpu runs on ``LSTM_BENCH_THREADS`` threads when that variable is set, else it picks
each epoch the cores other processes leave free, up to NUMBA_NUM_THREADS (Numba's default: every
core); the numpy reference runs on its BLAS's threads, ``LSTM_BENCH_BLAS_THREADS`` when set
(threadpoolctl pins them). ``extra_info`` records both counts the benchmark ran on (``threads``,
``threads_mode``, ``blas_threads``) and what was asked (``threads_asked``, ``blas_threads_asked``):

    LSTM_BENCH_THREADS=1 LSTM_BENCH_BLAS_THREADS=1 python -m pytest tests/benchmarks --benchmark-enable
"""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from parallel_lstm.data import make_workload
from parallel_lstm.lstm_numpy.backends import BACKENDS
from parallel_lstm.lstm_numpy.contract import check_data, epoch_orders
from parallel_lstm.lstm_numpy.flops import epoch_flops
from parallel_lstm.reports import census
from parallel_lstm.reports.machine import blas_threads
from parallel_lstm.reports.measuring import blas_pinned

# The timed sizes. "heavy" is reduced to a quarter of its windows (N=1024 instead of 4096,
# still T=32, H=128, B=128) so a NumPy round takes seconds, not tens of seconds.
TIMED = {"seed": {}, "light": {}, "heavy": {"samples": 1024}}
# With --benchmark-disable (the ordinary test run) each runs once: keep that quick.
UNTIMED = {"seed": {}, "light": {}, "heavy": {"samples": 256, "hidden": 32, "batch_size": 64}}
MATMUL_N = 2048


def threads_from(variable: str) -> int | None:
    """The thread count the user asked for in an environment variable, None when unset."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"{variable} must be a positive integer, got {text!r}.")
    return int(text)


THREADS = threads_from("LSTM_BENCH_THREADS")
BLAS_THREADS = threads_from("LSTM_BENCH_BLAS_THREADS")


@pytest.fixture(autouse=True)
def pinned_blas():
    with blas_pinned(BLAS_THREADS):
        yield


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
    config = replace(workload.config, threads=THREADS)
    params = workload.initial_params()
    data = check_data(params, workload.data, config.task)
    order = epoch_orders(len(data.X_train), 1, config.seed)[0]
    trainer = status.module.make_trainer(params, data, config)
    trainer.run_epoch(order)                       # warm-up: JIT compilation and first touch, not timed

    shapes = workload.shapes
    benchmark.group = f"workload {workload_name}"
    benchmark.extra_info.update(
        backend=backend, workload=workload_name, task=config.task, dtype=str(params.dtype), **shapes,
        threads_asked=THREADS, blas_threads=blas_threads(), blas_threads_asked=BLAS_THREADS,
        device=trainer.stats.get("device"),
        compute_capability=trainer.stats.get("compute_capability"),
        kernel_version=trainer.stats.get("kernel_version"),
        flops_per_epoch=epoch_flops(shapes, config.task))
    losses, valid_loss = benchmark(trainer.run_epoch, order)
    # numba_cpu may change its count from one epoch to the next: epochs per count, the warm-up included
    benchmark.extra_info.update(threads=trainer.stats.get("threads"), threads_mode=trainer.stats.get("threads_mode"),
                                threads_used=trainer.stats.get("threads_used"))
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
    benchmark.extra_info.update(n=n, dtype=dtype, flop=2 * n**3, blas_threads=blas_threads(),
                                blas_threads_asked=BLAS_THREADS)
    product = benchmark(np.matmul, a, b)
    assert product.shape == (n, n)
