"""Time one training epoch of the reference and of lstm_numba_cpu, as ratios measured in one run.

    python -m lstm_numba_cpu.measure [--repeats 7] [--workloads seed light heavy] [--no-heavy-float32] [--stat min]

For each workload: the first numba_cpu epoch (JIT compilation or loading Numba's cache, reported on
its own), then ``repeats`` rounds, each timing one epoch of numpy, numba_cpu on all threads and
numba_cpu on one thread, interleaved so that a noisy neighbour hits all three alike; medians are
reported (``--stat min``: the fastest of the rounds, for a machine shared with other work). GFLOP/s counts lstm_numpy.flops' FLOPs (a training step is 3 x 2 T B 4H (D+H) plus the
head; the validation pass is one forward) and is compared with NumPy's 2048 x 2048 A @ B measured in
the same run. speedup = T_numpy / T_numba; parallel efficiency = T_1thread / T_threads / threads.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numba
import numpy as np

import lstm_numpy as ref
from data import make_workload
from lstm_numpy.contract import epoch_orders
from lstm_numpy.flops import epoch_flops
from run_comparison import positive_int

from . import describe, make_trainer


def matmul_gflops(dtype, n: int = 2048, repeats: int = 5) -> float:
    """NumPy's (BLAS's) rate for an n x n @ n x n product, from the fastest of ``repeats``: the machine's
    capability, so that a busy moment cannot flatter the backend's percentage."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    A @ B
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        A @ B
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / np.min(times) / 1e9


def timed(trainer, order) -> float:
    start = time.perf_counter()
    trainer.run_epoch(order)
    return time.perf_counter() - start


def measure(name: str, dtype, repeats: int, threads: int, stat=np.median) -> dict:
    overrides = {"epochs": 1}
    w = make_workload(name, **overrides)
    params = ref.init_params(*w.sizes, seed=0, dtype=dtype)
    order = epoch_orders(w.data.X_train.shape[0], 1, 0)[0]
    data = ref.contract.check_data(params, w.data, w.config.task)
    trainers = {"numpy": ref.make_trainer(params, data, w.config)}
    start = time.perf_counter()
    trainers["numba"] = make_trainer(params, data, replace(w.config, threads=threads))
    first = timed(trainers["numba"], order)
    trainers["numba_1"] = make_trainer(params, data, replace(w.config, threads=1))
    timed(trainers["numba_1"], order)
    timed(trainers["numpy"], order)                         # warm-up of the reference too
    times = {key: [] for key in trainers}
    for _ in range(repeats):
        for key, trainer in trainers.items():
            times[key].append(timed(trainer, order))
    median = {key: float(stat(v)) for key, v in times.items()}
    flops = epoch_flops(w.shapes, w.config.task)
    return {"workload": name, "dtype": np.dtype(dtype).name, "shapes": w.shapes, "first_epoch_s": first,
            "numpy_s": median["numpy"], "numba_s": median["numba"], "numba_1thread_s": median["numba_1"],
            "speedup": median["numpy"] / median["numba"],
            "efficiency": median["numba_1"] / median["numba"] / threads,
            "gflops": flops / median["numba"] / 1e9, "numpy_gflops": flops / median["numpy"] / 1e9,
            "setup_s": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--workloads", nargs="+", default=["seed", "light", "heavy"])
    parser.add_argument("--no-heavy-float32", action="store_true", help="skip heavy in float32")
    parser.add_argument("--stat", choices=["median", "min"], default="median", help="statistic of the rounds")
    args = parser.parse_args(argv)
    threads = numba.config.NUMBA_NUM_THREADS
    facts = describe()
    print(f"machine: {facts['cpu']}, {os.cpu_count()} cores; numba {facts['numba']} "
          f"({facts['threading_layer']} threading layer, {threads} threads), numpy {np.__version__}")
    rate = {np.float64: matmul_gflops(np.float64), np.float32: matmul_gflops(np.float32)}
    runs = [(name, np.float64) for name in args.workloads]
    if "heavy" in args.workloads and not args.no_heavy_float32:
        runs.append(("heavy", np.float32))
    header = (f"{'workload':9} {'dtype':7} {'sizes':34} {'1st epoch':>9} {'numpy':>9} {'numba':>9} {'numba 1T':>9} "
              f"{'speedup':>8} {'par.eff':>7} {'GFLOP/s':>8} {'% A@B':>6}")
    stat = {"median": np.median, "min": np.min}[args.stat]
    results = [measure(name, dtype, args.repeats, threads, stat) for name, dtype in runs]
    for dtype in rate:            # measured again after the runs; the better rate is kept
        rate[dtype] = max(rate[dtype], matmul_gflops(dtype))
    print(f"NumPy 2048x2048 A@B (best of 5, before and after): float64 {rate[np.float64]:.1f} GFLOP/s, "
          f"float32 {rate[np.float32]:.1f} GFLOP/s (BLAS threads: default)")
    print(f"{args.stat} of {args.repeats} epochs each; times in ms; 1st epoch = JIT compile or Numba cache load + one epoch")
    print(header)
    print("-" * len(header))
    for r in results:
        name, dtype = r["workload"], np.dtype(r["dtype"]).type
        s = r["shapes"]
        sizes = f"N={s['N_train']} T={s['T']} D={s['D']} H={s['H']} B={s['B']}"
        print(f"{name:9} {r['dtype']:7} {sizes:34} {1e3 * r['first_epoch_s']:9.1f} {1e3 * r['numpy_s']:9.2f} "
              f"{1e3 * r['numba_s']:9.2f} {1e3 * r['numba_1thread_s']:9.2f} {r['speedup']:7.1f}x "
              f"{100 * r['efficiency']:6.0f}% {r['gflops']:8.1f} {100 * r['gflops'] / rate[dtype]:5.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
