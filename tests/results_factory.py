"""Synthetic results documents of the harness's schema (reports/resultfiles.py), for the report's tests.

Only the fields the report reads are filled; times are chosen by the test, never measured.
"""
import json

from parallel_lstm.lstm_numpy.flops import epoch_flops

SHAPES = {"seed": dict(N_train=59, N_valid=7, T=11, D=3, H=50, Y=3, B=7),
          "light": dict(N_train=95, N_valid=12, T=12, D=1, H=16, Y=1, B=16),
          "heavy": dict(N_train=256, N_valid=32, T=8, D=1, H=32, Y=1, B=64)}
TASKS = {"seed": "classification"}


def result(backend, median, *, epochs=3, threads=None, simulator=False, loss_scale=1.0, spread=None,
           noisy=None, breakdown=True, compile_seconds=0.2, speedup=None):
    """One backend's result: epochs around ``median`` (±10%), losses the reference's times ``loss_scale``."""
    times = [median * f for f in (0.9, 1.0, 1.1, 1.0, 1.0, 1.0, 1.0)[:epochs]]
    train = [1.0 / (k + 1) * loss_scale for k in range(epochs)]
    out = {"backend": backend, "simulator": simulator, "timed": not simulator,
           "train_loss": train, "valid_loss": [2 * v for v in train],
           "epoch_seconds": None if simulator else times, "median_epoch_seconds": None if simulator else median,
           "compile_seconds": None if simulator else (0.001 if backend == "numpy" else compile_seconds),
           "user_seconds_per_epoch": median, "sys_seconds_per_epoch": 0.0, "speedup": speedup,
           "threads": threads, "parallel_efficiency": None, "samples_per_second": 100.0 / median,
           "gflops": 1.0, "fraction_of_matmul": 0.1, "is_device": backend == "numba_cuda", "stats": {},
           "breakdown": ({"forward_seconds": 0.4 * median, "backward_seconds": 0.5 * median,
                          "update_seconds": None, "setup_seconds": 0.0, "host_params_seconds": 0.0,
                          "transfer_seconds": None, "repeats": 3} if breakdown and not simulator else None),
           "breakdown_skipped": None, "agrees": None if backend == "numpy" else True, "mismatch": None}
    if spread is not None:
        out["epoch_spread"] = spread
    if noisy is not None:
        out["noisy"], out["noise_reasons"] = True, noisy
    return out


def run(workload, results, *, sweep_value=None, shapes=None, label="main"):
    shapes = shapes or SHAPES[workload]
    task = TASKS.get(workload, "regression")
    return {"label": label, "sweep_value": sweep_value, "results": results, "failed": {},
            "workload": {"name": workload, "task": task, "shapes": shapes, "epochs": 3, "lr": 0.1,
                         "flops_per_epoch": epoch_flops(shapes, task)}}


def document(workload="light", dtype="float64", created="2026-11-22T10:00:00+00:00", *, times=None, threads=None,
             exit_code=0, host="box", cpu="Test CPU", data=None, simulator=False, tool=None, runs=None,
             sweep=None, load=None, scaling=None, commit=None, epochs=3, **result_options):
    """A results document of one run; ``times`` = {backend: median epoch seconds} (numpy the reference)."""
    times = times or {"numpy": 0.010, "numba_cpu": 0.002}
    if runs is None:
        numba_threads = threads or 2
        results = {b: result(b, t, epochs=epochs, simulator=simulator and b == "numba_cuda",
                             threads=None if b == "numpy" else numba_threads,
                             speedup=times["numpy"] / t if "numpy" in times else None, **result_options)
                   for b, t in times.items()}
        runs = [run(workload, results)]
    doc = {"schema": "parallel-lstm/run_comparison/1", "created": created, "argv": [], "exit_code": exit_code,
           "verdict": {"agree": exit_code == 0, "line": f"VERDICT: PASS: test verdict for {workload}.",
                       "reference": "numpy", "dtype": dtype, "rtol": 1e-10 if dtype == "float64" else 1e-4,
                       "compared": [b for b in times if b != "numpy"], "mismatches": []},
           "config": {"workload": workload, "backends": list(times), "dtype": dtype, "threads": threads,
                      "data": data, "column": None, "cuda_simulator": simulator, "kernel_version": None,
                      "sweep": None},
           "machine": {"hostname": host, "cpu_model": cpu, "usable_cores": 4, "cuda_simulator": simulator,
                       "numba": {"num_threads": threads or 2, "threading_layer": "omp"}, "cuda_device": None},
           "reference_matmul": {"float64_gflops": 100.0, "float32_gflops": 200.0},
           "availability": {}, "runs": runs, "sweep": sweep}
    for key, value in (("tool", tool), ("load", load), ("scaling", scaling), ("commit", commit)):
        if value is not None:
            doc[key] = value
    return doc


def sweep_document(workload, param, values, times_of, **options):
    """A sweep: one run per value, ``times_of(value)`` -> {backend: median seconds}; shapes follow the value."""
    key = {"hidden": "H", "samples": "N_train", "batch_size": "B", "seq_len": "T", "threads": None}[param]
    runs = []
    for value in values:
        shapes = dict(SHAPES[workload], **({key: value} if key else {}))
        times = times_of(value)
        runs.append(run(workload, {b: result(b, t, threads=value if param == "threads" and b != "numpy" else
                                             (None if b == "numpy" else 2), speedup=times["numpy"] / t)
                                   for b, t in times.items()},
                        sweep_value=value, shapes=shapes, label=f"{param}={value}"))
    times = times_of(values[0])
    sweep = {"param": param, "values": values,
             "median_epoch_seconds": {b: [r["results"][b]["median_epoch_seconds"] for r in runs] for b in times},
             "slopes": {b: None for b in times}}
    return document(workload, times=times, runs=runs, sweep=sweep, **options)


def write(folder, name, doc) -> str:
    """Write ``doc`` as ``name``.json into folder; return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1))
    return str(path)
