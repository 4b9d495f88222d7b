"""Validate every kernel version on the GPU, then time them: ``python -m lstm_numba_cuda.gpu_check --out DIR``.

The llm.c pattern: first every version (v1, v2, v3) against the NumPy reference on the
GPU (loss_and_grads at sizes that cross tiles, both tasks, float64 and float32, and a
short training run); only if all match, time v1/v2/v3 against numpy and numba_cpu
on the ``light``, ``heavy`` and ``gpu`` workloads. Timings: one warm-up epoch (JIT,
first launches; reported separately), then the median of ``--repeats`` epochs, with
``cuda.synchronize()`` before each clock read. CPU baselines on the large workloads
time ``--baseline-batches`` minibatches (plus one validation chunk) and extrapolate
to an epoch; the result rows say so. Results go to DIR/gpu_check-<time>.json and .csv
(new files, written atomically), with the device recorded.

On the simulator it refuses to report timings (exit status 2).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

from data.workloads import make_workload

import lstm_numpy as ref
from lstm_numpy.contract import epoch_orders
from lstm_numpy.trainer import NumpyTrainer

from . import describe, is_available, loss_and_grads, simulator_enabled, train
from lstm_numpy.flops import epoch_flops
from run_comparison import positive_int

from .trainer import KERNEL_VERSIONS, CudaTrainer, check_version

WORKLOADS = ("light", "heavy", "gpu")


def _write_atomic(path: str, text: str) -> None:
    if os.path.exists(path):
        raise ref.UserError(f"{path} already exists; results of an earlier run are never overwritten.")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def validate(versions) -> list[dict]:
    """Every version against the reference on the GPU; one row per check, each with ok True/False."""
    rows = []
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        for B, T, D, H, Y in [(5, 7, 3, 37, 3), (33, 3, 1, 130, 2), (1, 1, 2, 3, 3)]:
            params = ref.init_params(D, H, Y, seed=1, dtype=dtype, forget_bias=0.5)
            for task in ref.TASKS:
                X = rng.normal(size=(B, T, D)).astype(dtype)
                Yt = rng.normal(size=(B, Y)).astype(dtype) if task == "regression" else rng.integers(0, Y, (B, T))
                want_loss, want = ref.loss_and_grads(params, X, Yt, task)
                for version in versions:
                    row = {"check": "loss_and_grads", "version": version, "dtype": np.dtype(dtype).name,
                           "task": task, "sizes": f"B={B} T={T} D={D} H={H} Y={Y}", "ok": True, "error": ""}
                    try:
                        loss, grads = loss_and_grads(params, X, Yt, task, kernel_version=version)
                        ref.assert_close("loss", loss, want_loss)
                        for (name, value), (_, expected) in zip(grads.items(), want.items()):
                            ref.assert_close(name, value, expected)
                    except AssertionError as exc:
                        row.update(ok=False, error=str(exc))
                    rows.append(row)
        workload = make_workload("light")
        params = ref.init_params(*workload.sizes, seed=0, dtype=dtype)
        config = replace(workload.config, epochs=3, clip_norm=1.0)
        want = ref.train(params, workload.data, config)
        for version in versions:
            row = {"check": "train light 3 epochs", "version": version, "dtype": np.dtype(dtype).name,
                   "task": config.task, "sizes": str(workload.shapes), "ok": True, "error": ""}
            try:
                got = train(params, workload.data, replace(config, kernel_version=version))
                ref.assert_close("train_loss", np.array(got.train_loss), np.array(want.train_loss), atol=0)
                ref.assert_close("valid_loss", np.array(got.valid_loss), np.array(want.valid_loss), atol=0)
                for (name, value), (_, expected) in zip(got.params.items(), want.params.items()):
                    ref.assert_close(name, value, expected)
            except AssertionError as exc:
                row.update(ok=False, error=str(exc))
            rows.append(row)
    return rows


def _subset(data: ref.Dataset, n_train: int, n_valid: int) -> ref.Dataset:
    return ref.Dataset(data.X_train[:n_train], data.Y_train[:n_train], data.X_valid[:n_valid], data.Y_valid[:n_valid])


def _time_trainer(trainer, orders, synchronize) -> tuple[float, list[float]]:
    """(warm-up epoch seconds, steady epoch seconds), clocks read after synchronize()."""
    seconds = []
    for order in orders:
        synchronize()
        start = time.perf_counter()
        trainer.run_epoch(order)
        synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds[0], seconds[1:]


def benchmark(workload_names, versions, repeats: int, baseline_batches: int, dtype) -> list[dict]:
    from numba import cuda

    rows = []
    for name in workload_names:
        workload = make_workload(name)
        params = ref.init_params(*workload.sizes, seed=0, dtype=dtype)
        data = ref.contract.check_data(params, workload.data, workload.config.task)
        N, T, D = data.X_train.shape
        _, H, Y = workload.sizes
        B = workload.config.batch_size
        n_batches = -(-N // B)
        flop_per_epoch = epoch_flops(workload.shapes, workload.config.task)   # the harness's count, head included
        candidates = [("numpy", None, NumpyTrainer)]
        try:
            import lstm_numba_cpu
            if hasattr(lstm_numba_cpu, "train") and hasattr(lstm_numba_cpu, "make_trainer"):
                candidates.append(("numba_cpu", None, lstm_numba_cpu.make_trainer))
        except ImportError:
            pass
        candidates += [("numba_cuda", v, CudaTrainer) for v in versions]
        for backend, version, make in candidates:
            config = replace(workload.config, kernel_version=version)
            on_gpu = backend == "numba_cuda"
            sample = data
            extrapolated = False
            if not on_gpu and name != "light":
                sample = _subset(data, baseline_batches * B, B)   # a full CPU epoch would take minutes
                extrapolated = True
            n_sample = sample.X_train.shape[0]
            build_start = time.perf_counter()
            trainer = make(params, sample, config)
            build_seconds = time.perf_counter() - build_start
            orders = epoch_orders(n_sample, repeats + 1, 0)
            sync = cuda.synchronize if on_gpu else (lambda: None)
            first, steady = _time_trainer(trainer, orders, sync)
            median = statistics.median(steady)
            if extrapolated:
                median *= n_batches / (-(-n_sample // B))
            stats = getattr(trainer, "stats", {})
            rows.append({"workload": name, "backend": backend, "kernel_version": version, "dtype": np.dtype(dtype).name,
                         "N": N, "T": T, "D": D, "H": H, "Y": Y, "B": B, "epoch_seconds_median": median,
                         "first_epoch_seconds": first, "setup_seconds": build_seconds, "repeats": len(steady),
                         "extrapolated_from_minibatches": (-(-n_sample // B)) if extrapolated else None,
                         "samples_per_second": N / median, "gflops": flop_per_epoch / median / 1e9,
                         "launches_per_epoch": stats.get("launches_per_epoch"),
                         "h2d_per_epoch": stats.get("h2d_per_epoch"), "d2h_per_epoch": stats.get("d2h_per_epoch")})
            print(f"{name:6s} {backend:10s} v{version or '-'} {median * 1e3:10.3f} ms/epoch", flush=True)
        numpy_time = next(r["epoch_seconds_median"] for r in rows if r["workload"] == name and r["backend"] == "numpy")
        for r in rows:
            if r["workload"] == name:
                r["speedup_vs_numpy"] = numpy_time / r["epoch_seconds_median"]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_numba_cuda.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the JSON and CSV results (created if missing)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--versions", default=",".join(map(str, KERNEL_VERSIONS)))
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed epochs after the warm-up epoch")
    parser.add_argument("--baseline-batches", type=positive_int, default=4,
                        help="minibatches the CPU baselines time on heavy/gpu (then extrapolated)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    if simulator_enabled():
        print("gpu_check: the CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1); its timings are not GPU timings, "
              "so nothing is reported; run this on a machine with a CUDA GPU and the variable unset.", file=sys.stderr)
        return 2
    reason = is_available()
    if reason is not None:
        print(f"gpu_check: {reason}", file=sys.stderr)
        return 2
    try:
        versions = [check_version(int(v)) for v in args.versions.split(",")]
    except (ValueError, ref.UserError) as exc:
        print(f"gpu_check: --versions takes kernel versions from {sorted(KERNEL_VERSIONS)} separated by commas "
              f"({exc}).", file=sys.stderr)
        return 2
    workloads = args.workloads.split(",")
    for name in workloads:
        if name not in WORKLOADS:
            print(f"gpu_check: unknown workload {name!r}; choose from {', '.join(WORKLOADS)}.", file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = {"command": " ".join(sys.argv), "backend": describe(), "dtype": args.dtype,
              "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                          "python": platform.python_version(), "numpy": np.__version__}}
    checks = validate(versions)
    result["validation"] = checks
    failed = [c for c in checks if not c["ok"]]
    if failed:
        print(f"gpu_check: {len(failed)} validation checks FAILED; not timing. First: {failed[0]}", file=sys.stderr)
    else:
        print(f"all {len(checks)} validation checks match the reference", flush=True)
        result["timings"] = benchmark(workloads, versions, args.repeats, args.baseline_batches, np.dtype(args.dtype))
    base = os.path.join(args.out, f"gpu_check-{stamp}")
    _write_atomic(base + ".json", json.dumps(result, indent=2, default=str))
    if "timings" in result:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(result["timings"][0]) + ["device", "compute_capability"])
        writer.writeheader()
        for row in result["timings"]:
            writer.writerow({**row, "device": result["backend"]["device"],
                             "compute_capability": result["backend"]["compute_capability"]})
        _write_atomic(base + ".csv", buffer.getvalue())
    print(f"wrote {base}.json" + ("" if failed else f" and {base}.csv"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
