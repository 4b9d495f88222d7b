"""How run_comparison.py and the bench tools (reports.cpu_bench, reports.gpu_check) measure: one method each.

    epoch time        the median of a training run's epochs (History.epoch_seconds: lstm_numpy.train_with
                      reads the clock around run_epoch, which returns host losses, so a GPU has finished);
                      epoch_spread() gives the min, quartiles and max of the same list
    compile time      a first 1-epoch run on a tiny slice of the same task and dtype minus a second one
    phase breakdown   forward, forward+backward and full epochs on one trainer, interleaved; the
                      differences are the phases
    reference rate    matmul_gflops(): NumPy's n x n product, one warm-up, then the median of repeats
    speedup(t_reference, t_backend)                    = t_reference / t_backend
    parallel_efficiency(t_one_thread, t_p_threads, p)  = t_one_thread / (p * t_p_threads)

``measure_backend`` applies these to one backend on one workload and returns a result of the
results-file schema (reports/resultfiles.py); ``derived_rates`` adds the rates. In those results
``parallel_efficiency`` takes the NumPy reference's epoch as the one-thread time (= speedup / threads,
CPU backends only); reports.cpu_bench also times numba_cpu on one thread and prints the efficiency
against that.
"""
from __future__ import annotations

import dataclasses
import resource
import sys
import time

import numpy as np

from lstm_numpy.contract import PHASES, Dataset, check_data, epoch_orders
from lstm_numpy.flops import epoch_flops

from .census import REFERENCE, BackendStatus

BREAKDOWN_BUDGET_S = 2.0     # aim for about this much time per timed phase
BREAKDOWN_MAX_REPEATS = 5
BREAKDOWN_SKIP_S = 60.0      # no breakdown when one epoch takes longer (it costs three more epochs)


def speedup(t_reference: float, t_backend: float) -> float:
    """How many times faster the backend runs than the reference: T_reference / T_backend."""
    return t_reference / t_backend


def parallel_efficiency(t_one_thread: float, t_p_threads: float, p: int) -> float:
    """T_1 / (p * T_p): 1.0 when p threads run p times as fast as one."""
    return t_one_thread / (p * t_p_threads)


def median_seconds(seconds) -> float:
    return float(np.median(seconds))


def epoch_spread(seconds) -> dict:
    """{min, q1, median, q3, max} of a list of epoch times."""
    q = np.percentile(np.asarray(seconds, dtype=float), [0, 25, 50, 75, 100])
    return dict(zip(("min", "q1", "median", "q3", "max"), map(float, q)))


def matmul_gflops(n: int = 2048, repeats: int = 3) -> dict:
    """NumPy's n x n matmul rate, the machine's reference GFLOP/s: one warm-up, then the median of repeats.

    One product costs 2 n^3 floating-point operations. Returns
    {"n", "repeats", "float64_gflops", "float32_gflops", "float64_seconds", "float32_seconds"}.
    """
    result = {"n": n, "repeats": repeats}
    rng = np.random.default_rng(0)
    for dtype in ("float64", "float32"):
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        a @ b                                          # warm-up: page faults, BLAS thread start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        seconds = median_seconds(times)
        result[f"{dtype}_seconds"] = seconds
        result[f"{dtype}_gflops"] = 2.0 * n**3 / seconds / 1e9
    return result


def tiny_slice(workload) -> Dataset:
    """The same task, dtype and sizes on a few sequences: enough to compile every kernel."""
    B = workload.config.batch_size
    d = workload.data
    n_train, n_valid = min(len(d.X_train), B + 1), min(len(d.X_valid), 2)
    return Dataset(d.X_train[:n_train], d.Y_train[:n_train], d.X_valid[:n_valid], d.Y_valid[:n_valid])


def warm_up(module, params, workload) -> float:
    """Run a 1-epoch training and every run_epoch phase on a tiny slice; return the seconds taken."""
    tiny = tiny_slice(workload)
    config = dataclasses.replace(workload.config, epochs=1)
    start = time.perf_counter()
    module.train(params, tiny, config)
    checked = check_data(params, tiny, config.task)
    trainer = module.make_trainer(params, checked, config)
    order = epoch_orders(len(checked.X_train), 1, config.seed)[0]
    for phase in PHASES:
        trainer.run_epoch(order, phase)
    trainer.host_params()
    return time.perf_counter() - start


def compile_seconds(module, params, workload) -> float:
    """JIT compile time: a first tiny run (compiles) minus a second one (already compiled)."""
    first = warm_up(module, params, workload)
    second = warm_up(module, params, workload)
    return max(first - second, 0.0)


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)   # Linux reports KiB, macOS bytes


def phase_breakdown(module, params, workload, median_epoch: float) -> dict:
    """Time forward, forward+backward and full epochs on one trainer; the differences are the phases.

    setup_seconds: make_trainer (for a device backend: the host-to-device copy of data and weights);
    host_params_seconds: copying the weights back. Both happen once per run, outside the epochs.
    The forward phase includes the validation pass, which every run_epoch call makes.
    """
    config = workload.config
    data = check_data(params, workload.data, config.task)
    order = epoch_orders(len(data.X_train), 1, config.seed)[0]
    repeats = int(np.clip(BREAKDOWN_BUDGET_S / max(median_epoch, 1e-9), 1, BREAKDOWN_MAX_REPEATS))
    start = time.perf_counter()
    trainer = module.make_trainer(params, data, config)
    setup = time.perf_counter() - start
    times = {phase: [] for phase in PHASES}
    for _ in range(repeats):                    # interleaved, so a busy spell on the machine hits every phase
        for phase in PHASES:
            start = time.perf_counter()
            trainer.run_epoch(order, phase)     # returns host losses: a GPU is synchronised here
            times[phase].append(time.perf_counter() - start)
    forward, backward, update = (np.array(times[phase]) for phase in PHASES)
    start = time.perf_counter()
    trainer.host_params()
    download = time.perf_counter() - start
    # Medians of the differences within each interleaved repeat; noise can make one slightly negative.
    return {"forward_seconds": median_seconds(forward),
            "backward_seconds": max(median_seconds(backward - forward), 0.0),
            "update_seconds": max(median_seconds(update - backward), 0.0),
            "setup_seconds": setup, "host_params_seconds": download, "repeats": repeats}


def measure_backend(status: BackendStatus, workload, params, progress, compiled: set,
                    breakdown: bool) -> tuple[dict, object]:
    """Train one backend on the workload and measure it; returns (result dict, History).

    ``compiled``: names of the backends whose compile time was measured already (this adds to it);
    ``progress``: a reports.console.Progress; ``breakdown``: also time the phases of an epoch.
    """
    module, name = status.module, status.name
    epochs = workload.config.epochs
    timed = not status.simulator
    progress.begin(name)
    compile_s = None
    if timed and name not in compiled:
        compile_s = compile_seconds(module, params, workload)
        compiled.add(name)
        progress.note("compiled")
    rss_before = peak_rss_bytes()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)   # every thread of the process, microseconds
    history = module.train(params, workload.data, workload.config,
                           progress=lambda epoch, seconds: progress.epoch(epoch, epochs))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    stats = dict(history.stats)
    median = median_seconds(history.epoch_seconds) if timed else None
    result = {
        "backend": name, "simulator": status.simulator, "timed": timed,
        "train_loss": list(history.train_loss), "valid_loss": list(history.valid_loss),
        "epoch_seconds": list(history.epoch_seconds) if timed else None,
        "median_epoch_seconds": median, "compile_seconds": compile_s,
        "user_seconds_per_epoch": (cpu_after.ru_utime - cpu_before.ru_utime) / epochs if timed else None,
        "sys_seconds_per_epoch": (cpu_after.ru_stime - cpu_before.ru_stime) / epochs if timed else None,
        "threads": stats.get("threads"),
        "peak_rss_bytes": peak_rss_bytes(), "peak_rss_growth_bytes": peak_rss_bytes() - rss_before,
        "device_memory_bytes": stats.get("device_memory_bytes"),
        "is_device": any(key in stats for key in ("h2d_per_epoch", "d2h_per_epoch", "device")),
        "stats": stats, "breakdown": None, "breakdown_skipped": None, "agrees": None, "mismatch": None,
    }
    if timed and breakdown and median > BREAKDOWN_SKIP_S:
        result["breakdown_skipped"] = f"an epoch takes {median:.0f} s, over {BREAKDOWN_SKIP_S:.0f} s"
    elif timed and breakdown:
        progress.note("timing the forward, backward and update phases")
        result["breakdown"] = phase_breakdown(module, params, workload, median)
        parts = result["breakdown"]
        parts["transfer_seconds"] = (parts["setup_seconds"] + parts["host_params_seconds"]
                                     if result["is_device"] else None)
    return result, history


def derived_rates(results: dict, workload, matmul: dict | None, dtype: str) -> None:
    """Speedup, parallel efficiency, samples/s, GFLOP/s and fraction of the matmul rate, in place.

    The reference is results["numpy"]; parallel efficiency takes its epoch as the one-thread time.
    """
    flops = epoch_flops(workload.shapes, workload.config.task)
    reference = results.get(REFERENCE, {}).get("median_epoch_seconds")
    for result in results.values():
        median = result["median_epoch_seconds"]
        for key in ("speedup", "parallel_efficiency", "samples_per_second", "gflops", "fraction_of_matmul"):
            result[key] = None
        if not median:
            continue
        result["samples_per_second"] = workload.shapes["N_train"] / median
        result["gflops"] = flops / median / 1e9
        result["fraction_of_matmul"] = result["gflops"] / matmul[f"{dtype}_gflops"] if matmul else None
        if reference:
            result["speedup"] = speedup(reference, median)
            if result["threads"] and not result["is_device"]:
                result["parallel_efficiency"] = parallel_efficiency(reference, median, result["threads"])
