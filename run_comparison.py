"""The comparison harness: train every backend on one workload, prove they agree, time them.

    python run_comparison.py                                   # seed workload, every backend this machine runs
    python run_comparison.py --workload heavy --threads 2      # a CPU busy for seconds per epoch
    python run_comparison.py --workload light --sweep hidden=16,32,64,128
    python run_comparison.py --backends numba_cuda --cuda-simulator --epochs 1   # CUDA kernels without a GPU

In order, it:
1. checks every option (a bad one: one sentence on stderr, exit 2, nothing written);
2. builds the workload (data/workloads.py) and one set of initial parameters for all backends;
3. per backend: times the JIT compilation on a tiny slice of the same dtype and task (the
   difference between a first and a second tiny run), trains the configured epochs (the loss
   log; per-epoch wall time, CPU user and sys time, peak memory), then times an epoch's
   forward, backward and update phases with ``trainer.run_epoch(order, upto=...)``;
4. compares every backend's per-epoch training and validation loss and final parameters with
   the NumPy reference (``lstm_numpy.assert_close``, rtol 1e-10 in float64, 1e-4 in float32)
   and prints one verdict line;
5. prints the timing table and writes JSON and CSV results (schema: ``reports/resultfiles.py``).

Exit codes: 0 every backend agrees with the reference; 1 one disagrees; 2 bad input; 3 training
produced a non-finite loss.

Measuring: compilation is never inside an epoch time; the epoch time is
the median of the training run's epochs; ``run_epoch`` returns host losses, so a GPU epoch is
synchronised before the clock is read; speedup = T_numpy / T_backend on the same workload;
parallel efficiency = speedup / threads for CPU backends; GFLOP/s come from ``training_flops``
and are also given as a fraction of NumPy's 2048x2048 matmul rate measured in the same run.
A backend on Numba's CUDA simulator is checked for equal losses but never timed.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from lstm_numpy.flops import epoch_flops, training_flops

REFERENCE = "numpy"
# Names a backend package must export for the harness to run it (see lstm_numpy/__init__.py).
REQUIRED_EXPORTS = ("make_trainer", "train", "is_available", "describe")
SWEEP_PARAMS = {"samples": "samples", "hidden": "hidden", "batch": "batch_size", "batch-size": "batch_size",
                "batch_size": "batch_size", "seq-len": "seq_len", "seq_len": "seq_len"}
SWEEP_OPTION = {"samples": "--samples", "hidden": "--hidden", "batch_size": "--batch-size", "seq_len": "--seq-len"}
MATMUL_N = 2048              # the reference matmul's size (tests shrink it)
PROGRESS_AFTER_S = 3.0       # progress lines start once a backend's run has taken this long
BREAKDOWN_BUDGET_S = 2.0     # aim for about this much time per timed phase
BREAKDOWN_MAX_REPEATS = 5
BREAKDOWN_SKIP_S = 60.0      # no breakdown when one epoch takes longer (it costs three more epochs)
DEVICE_STATS = ("device", "compute_capability", "device_memory_bytes", "launches_per_epoch",
                "h2d_per_epoch", "d2h_per_epoch", "kernel_version")
EXIT_OK, EXIT_DISAGREE, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3


def default_out_dir() -> Path:
    """reports/results/ of the checkout this file lives in, else of the current directory."""
    here = Path(__file__).resolve().parent
    root = here if (here / "pyproject.toml").exists() else Path.cwd()
    return root / "reports" / "results"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

class OneSentenceParser(argparse.ArgumentParser):
    """argparse, but an error is one sentence on stderr (no usage block) and exit code 2."""

    def error(self, message):
        message = message.rstrip(".")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see --help.\n")


def number_option(convert, accept, what: str):
    """An argparse type: ``convert`` the text, then require ``accept(value)``, else say ``must be <what>``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


positive_int = number_option(int, lambda v: v > 0, "a positive integer")
non_negative_int = number_option(int, lambda v: v >= 0, "a non-negative integer")
positive_float = number_option(float, lambda v: bool(np.isfinite(v) and v > 0), "a positive number")


def backend_list(text: str) -> list[str]:
    from lstm_numpy.backends import BACKENDS
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"give backend names separated by commas, from {', '.join(BACKENDS)}")
    for name in names:
        if name not in BACKENDS:
            raise argparse.ArgumentTypeError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def sweep_spec(text: str) -> tuple[str, list[int]]:
    """'hidden=16,32,64' -> ('hidden', [16, 32, 64])."""
    choices = "samples, hidden, batch or seq-len"
    param, sep, values = text.partition("=")
    if not sep or param.strip() not in SWEEP_PARAMS:
        raise argparse.ArgumentTypeError(f"must look like PARAM=V1,V2,... with PARAM one of {choices}, got {text!r}")
    try:
        sizes = [int(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers separated by commas, got {values!r}") from None
    if any(v <= 0 for v in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {values!r}")
    if len(set(sizes)) < 2:
        raise argparse.ArgumentTypeError(f"a sweep needs at least two different sizes to fit a slope, got {values!r}")
    return SWEEP_PARAMS[param.strip()], sizes


def build_parser() -> argparse.ArgumentParser:
    from data.workloads import DEFAULTS, WORKLOADS
    from lstm_numpy.backends import BACKENDS

    table = "\n".join(f"  {name:6} {task:14} H={H:<4} B={B:<4} lr={lr:<4} epochs={epochs}"
                      + (f" samples={N}" if N else "") + (f" seq-len={T}" if T else "")
                      + (f" forget-bias={fb}" if fb else "")
                      for name, (task, H, B, lr, epochs, N, T, fb) in DEFAULTS.items())
    parser = OneSentenceParser(
        prog="run_comparison.py",
        description="Train every backend on one workload, check that their losses agree with the NumPy\n"
                    "reference, time them, and write JSON and CSV results.",
        epilog=f"workload defaults (an option overrides them):\n{table}\n\n"
               "exit codes: 0 all backends agree, 1 a backend disagrees with the reference,\n"
               "2 bad input, 3 training produced a non-finite loss.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--workload", choices=WORKLOADS, default="seed",
        help="named workload, see below (default: seed, the original project's AirPassengers task)")
    add("--backends", type=backend_list, metavar="LIST",
        help=f"comma-separated backends from {', '.join(BACKENDS)}; the numpy reference is always added "
             "when another backend is compared (default: every backend this machine can run; numba_cuda "
             "only with a GPU, or with --cuda-simulator)")
    add("--cuda-simulator", action="store_true",
        help="run numba_cuda on Numba's CUDA simulator (sets NUMBA_ENABLE_CUDASIM=1): losses are checked, "
             "nothing is timed; slow, use small sizes (default: off)")
    add("--epochs", type=positive_int, help="training epochs (default: the workload's, 6 for seed)")
    add("--lr", type=positive_float, help="SGD learning rate (default: the workload's, 0.1)")
    add("--batch-size", type=positive_int, metavar="B", help="minibatch size (default: the workload's, 7 for seed)")
    add("--hidden", type=positive_int, metavar="H", help="hidden units (default: the workload's, 50 for seed)")
    add("--seq-len", type=positive_int, metavar="T",
        help="window length for light, heavy and gpu (default: the workload's; seed's is fixed at 11)")
    add("--samples", type=positive_int, metavar="N",
        help="training windows for heavy and gpu (default: the workload's, 4096 for heavy)")
    add("--dtype", choices=("float64", "float32"), default="float64",
        help="floating-point type of every backend (default: float64; losses must agree to 1e-10, "
             "float32 to 1e-4)")
    add("--threads", type=positive_int,
        help="threads of the CPU backends (default: Numba's, every core); the numpy reference uses its BLAS's")
    add("--seed", type=non_negative_int, default=0,
        help="seed of the initial weights, the minibatch order and synthetic data (default: 0)")
    add("--kernel-version", type=positive_int, metavar="V",
        help="CUDA kernel version of numba_cuda (default: the backend's fastest correct one)")
    add("--data", metavar="FILE", help="CSV file whose column replaces AirPassengers in seed and light "
                                       "(default: the shipped AirPassengers.csv); needs --column")
    add("--column", metavar="NAME", help="the numeric column of --data to use (default: none; needs --data)")
    add("--sweep", type=sweep_spec, metavar="PARAM=V1,V2,...",
        help="run every backend at each size of samples, hidden, batch or seq-len and fit the log-log "
             "slope of epoch time against size (default: no sweep)")
    add("--out", metavar="DIR", default=None,
        help=f"folder for the JSON and CSV results (default: reports/results/ of this checkout)")
    add("--report", action="store_true",
        help="after the run, build the course report (figures and REPORT.md in reports/) from the newest "
             "results files in the results folder and a 5-seed forecast run, as python -m reports does "
             "(default: off)")
    add("--quiet", action="store_true",
        help="print only the verdict line and the results files (default: loss log, tables and, on a "
             "terminal, progress)")
    return parser


def enable_cuda_simulator() -> None:
    """Set NUMBA_ENABLE_CUDASIM=1, which only works before Numba is first imported."""
    if "numba" in sys.modules:
        import numba.core.config
        if not numba.core.config.ENABLE_CUDASIM:
            from lstm_numpy.errors import UserError
            raise UserError("--cuda-simulator must be set before Numba is imported; run run_comparison.py "
                            "in a fresh process or set NUMBA_ENABLE_CUDASIM=1 in the environment.")
        return
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class BackendStatus:
    """What the registry says about one backend on this machine."""

    name: str
    module: object = None
    reason: str | None = None        # None: it can run here
    skip: str | None = None          # why a default run leaves out a backend that can run
    simulator: bool = False
    describe: dict = dataclasses.field(default_factory=dict)
    selected: bool = False


def simulator_active() -> bool:
    if "numba" in sys.modules:
        import numba.core.config
        return bool(numba.core.config.ENABLE_CUDASIM)
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def backend_status(name: str) -> BackendStatus:
    """Import a registered backend and ask it whether it can run here; never raises."""
    from lstm_numpy.backends import BACKENDS, get_backend
    status = BackendStatus(name)
    try:
        status.module = get_backend(name)
    except Exception as exc:   # a backend that fails to import is reported, not fatal
        status.reason = f"importing {BACKENDS.get(name, name)} failed ({type(exc).__name__}: {exc})"
        return status
    missing = [export for export in REQUIRED_EXPORTS if not hasattr(status.module, export)]
    if missing:
        status.reason = f"{status.module.__name__} does not export {', '.join(missing)} yet"
        return status
    try:
        status.reason = status.module.is_available()
    except Exception as exc:
        status.reason = f"is_available() raised {type(exc).__name__}: {exc}"
    try:
        status.describe = dict(status.module.describe())
    except Exception as exc:
        status.describe = {"error": f"describe() raised {type(exc).__name__}: {exc}"}
    status.simulator = bool(status.describe.get("simulator")) or ("cuda" in name and simulator_active())
    return status


def select_backends(requested: list[str] | None, use_simulator: bool) -> tuple[list[str], dict[str, BackendStatus]]:
    """The backends to run (reference first) and the status of every registered backend."""
    from lstm_numpy.backends import BACKENDS
    from lstm_numpy.errors import UserError
    census = {name: backend_status(name) for name in BACKENDS}
    if requested is None:
        chosen = []
        for name, status in census.items():
            if status.reason is None and status.simulator and not use_simulator:
                status.skip = ("it would run on Numba's CUDA simulator here (no GPU); add --cuda-simulator "
                                 "to check its losses (no timings)")
            elif status.reason is None:
                chosen.append(name)
    else:
        for name in requested:
            status = census[name]
            if status.reason is not None:
                hint = ("; add --cuda-simulator to run it on Numba's CUDA simulator"
                        if "cuda" in name and not use_simulator else "")
                raise UserError(f"backend {name} cannot run here: {status.reason.rstrip('.')}{hint}.")
        chosen = list(requested)
    if REFERENCE not in chosen and (chosen or requested is None):
        if census[REFERENCE].reason is not None:
            raise UserError(f"the reference backend cannot run here: {census[REFERENCE].reason.rstrip('.')}.")
        chosen.insert(0, REFERENCE)
    chosen.sort(key=lambda name: name != REFERENCE)
    for name in chosen:
        census[name].selected = True
    return chosen, census


# --------------------------------------------------------------------------------------------
# Measuring one backend
# --------------------------------------------------------------------------------------------

class Progress:
    """'backend: epoch k/n, s elapsed' lines for runs longer than a few seconds, on a terminal only."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.label = ""
        self.start = time.perf_counter()

    def begin(self, label: str) -> None:
        self.label, self.start = label, time.perf_counter()

    def epoch(self, epoch: int, epochs: int) -> None:
        elapsed = time.perf_counter() - self.start
        if self.enabled and elapsed >= PROGRESS_AFTER_S:
            print(f"  ... {self.label}: epoch {epoch}/{epochs - 1} done, {elapsed:.1f} s elapsed", flush=True)

    def note(self, text: str) -> None:
        elapsed = time.perf_counter() - self.start
        if self.enabled and elapsed >= PROGRESS_AFTER_S:
            print(f"  ... {self.label}: {text}, {elapsed:.1f} s elapsed", flush=True)


def tiny_slice(workload):
    """The same task, dtype and sizes on a few sequences: enough to compile every kernel."""
    from lstm_numpy.contract import Dataset
    B = workload.config.batch_size
    d = workload.data
    n_train, n_valid = min(len(d.X_train), B + 1), min(len(d.X_valid), 2)
    return Dataset(d.X_train[:n_train], d.Y_train[:n_train], d.X_valid[:n_valid], d.Y_valid[:n_valid])


def warm_up(module, params, workload) -> float:
    """Run a 1-epoch training and every run_epoch phase on a tiny slice; return the seconds taken."""
    from lstm_numpy.contract import PHASES, check_data, epoch_orders
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
    from lstm_numpy.contract import PHASES, check_data, epoch_orders
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
    return {"forward_seconds": float(np.median(forward)),
            "backward_seconds": max(float(np.median(backward - forward)), 0.0),
            "update_seconds": max(float(np.median(update - backward)), 0.0),
            "setup_seconds": setup, "host_params_seconds": download, "repeats": repeats}


def run_backend(status: BackendStatus, workload, params, progress: Progress, compiled: set,
                breakdown: bool) -> tuple[dict, object]:
    """Train one backend on the workload and measure it; returns (result dict, History)."""
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
    median = float(np.median(history.epoch_seconds)) if timed else None
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


def derived_rates(results: dict, workload, matmul: dict, dtype: str) -> None:
    """Speedup, parallel efficiency, samples/s, GFLOP/s and fraction of the matmul rate, in place."""
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
            result["speedup"] = reference / median
            if result["threads"] and not result["is_device"]:
                result["parallel_efficiency"] = result["speedup"] / result["threads"]


def compare_with_reference(results: dict, histories: dict, dtype: str, label: str) -> list[dict]:
    """assert_close on every epoch's train and valid loss and every final parameter; the mismatches."""
    from lstm_numpy import rtol_for
    from lstm_numpy.checks import assert_same_history
    rtol = rtol_for(dtype)
    reference = histories[REFERENCE]
    mismatches = []
    for name, history in histories.items():
        if name == REFERENCE:
            continue
        try:
            assert_same_history(name, history, reference, rtol=rtol)
        except AssertionError as exc:
            results[name]["agrees"], results[name]["mismatch"] = False, str(exc)
            mismatches.append({"backend": name, "label": label, "message": str(exc)})
        else:
            results[name]["agrees"] = True
    return mismatches


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------

def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def print_loss_log(workload, results: dict, dtype: str) -> None:
    s, c = workload.shapes, workload.config
    print(f"Loss log: workload {workload.name} ({c.task}), N_train={s['N_train']} N_valid={s['N_valid']} "
          f"T={s['T']} D={s['D']} H={s['H']} Y={s['Y']} B={s['B']}, lr {c.lr:g}, {c.epochs} epochs, "
          f"{dtype}, seed {c.seed}")
    width = 19
    header = "epoch " + "".join(f"{name + ' train':>{width}}{name + ' valid':>{width}}" for name in results)
    print(header)
    for epoch in range(c.epochs):
        print(f"{epoch:<6}" + "".join(f"{r['train_loss'][epoch]:>{width}.12g}{r['valid_loss'][epoch]:>{width}.12g}"
                                      for r in results.values()))


def print_timing(results: dict, matmul: dict, dtype: str, machine: dict | None = None) -> None:
    w = max(12, max(len(name) for name in results) + 2)
    print()
    print(f"Timing ({dtype}; compile = first minus second run on a tiny slice: JIT, and for CUDA the context; "
          f"epoch = median over the training run; user/sys = CPU seconds per epoch; speedup = numpy / backend; "
          f"efficiency = speedup / threads):")
    print(f"{'backend':<{w}}{'threads':>8}{'compile s':>11}{'epoch s':>11}{'user s':>9}{'sys s':>9}"
          f"{'speedup':>9}{'eff/thr':>9}{'samples/s':>11}{'GFLOP/s':>9}{'% matmul':>10}{'peak RSS':>10}")
    for name, r in results.items():
        if not r["timed"]:
            print(f"{name:<{w}}  runs on Numba's CUDA simulator: losses checked, no timing claims")
            continue
        print(f"{name:<{w}}{_fmt(r['threads'], 'd'):>8}{_fmt(r['compile_seconds'], '.3f'):>11}"
              f"{r['median_epoch_seconds']:>11.4g}{r['user_seconds_per_epoch']:>9.3g}{r['sys_seconds_per_epoch']:>9.3g}"
              f"{_fmt(r['speedup'], '.2f'):>9}{_fmt(r['parallel_efficiency'], '.2f'):>9}"
              f"{r['samples_per_second']:>11.4g}{r['gflops']:>9.3g}{_fmt(r['fraction_of_matmul'], '.2%'):>10}"
              f"{r['peak_rss_bytes'] / 2**20:>7.0f} MiB")
    rows = [(name, r["breakdown"], r) for name, r in results.items() if r["breakdown"]]
    if rows:
        print()
        print("Epoch breakdown (seconds, median of repeats; forward includes the validation pass; "
              "setup and host_params happen once per run; h2d+d2h = both, for device backends):")
        print(f"{'backend':<{w}}{'forward':>10}{'backward':>10}{'update':>10}{'setup':>10}{'host_params':>13}"
              f"{'h2d+d2h':>10}{'repeats':>9}")
        for name, b, _ in rows:
            print(f"{name:<{w}}{b['forward_seconds']:>10.4g}{b['backward_seconds']:>10.4g}{b['update_seconds']:>10.4g}"
                  f"{b['setup_seconds']:>10.3g}{b['host_params_seconds']:>13.3g}"
                  f"{_fmt(b['transfer_seconds'], '.3g'):>10}{b['repeats']:>9}")
    devices = [(name, r) for name, r in results.items() if r["is_device"]]
    if devices:
        print()
        print(f"{'backend':<{w}}{'device':<28}{'cc':>6}{'memory':>12}{'launches/ep':>13}{'h2d/ep':>8}"
              f"{'d2h/ep':>8}{'kernel':>8}")
        for name, r in devices:
            s = r["stats"]
            memory = s.get("device_memory_bytes")
            device = str(s.get("device") or "?") + (" (simulator)" if r["simulator"] else "")
            print(f"{name:<{w}}{device:<28}{str(s.get('compute_capability') or '-'):>6}"
                  f"{_fmt(memory and memory / 2**20, '.1f'):>8} MiB{_fmt(s.get('launches_per_epoch'), 'd'):>13}"
                  f"{_fmt(s.get('h2d_per_epoch'), 'd'):>8}{_fmt(s.get('d2h_per_epoch'), 'd'):>8}"
                  f"{str(s.get('kernel_version') or '-'):>8}")
    if machine:
        numba_info, env = machine["numba"], machine["thread_environment"]
        blas = (machine.get("blas") or {}).get("name") or "?"
        print()
        print(f"Machine: {machine['cpu_model']}; {machine['logical_cores']} logical cores "
              f"({machine['physical_cores'] or '?'} physical, {machine['usable_cores']} usable); Numba "
              f"{numba_info['num_threads']} threads, threading layer {numba_info['threading_layer'] or 'not started'}; "
              f"NumPy BLAS {blas} (OMP_NUM_THREADS={env['OMP_NUM_THREADS'] or 'unset'})"
              + ("; CUDA simulator on" if machine["cuda_simulator"] else ""))
    if matmul:
        print(f"Reference: NumPy {matmul['n']}x{matmul['n']} matmul {matmul['float64_gflops']:.1f} GFLOP/s float64, "
              f"{matmul['float32_gflops']:.1f} GFLOP/s float32 (the '% matmul' column divides by the {dtype} rate).")


def print_sweep(sweep: dict, names: list[str]) -> None:
    param = sweep["param"]
    print()
    print(f"Sweep of {param} (median epoch seconds; slope = d log(time) / d log({param})):")
    print(f"{param:<10}" + "".join(f"{name:>14}" for name in names))
    for k, value in enumerate(sweep["values"]):
        print(f"{value:<10}" + "".join(f"{_fmt(sweep['median_epoch_seconds'][n][k], '.4g', 'simulator'):>14}"
                                       for n in names))
    print(f"{'slope':<10}" + "".join(f"{_fmt(sweep['slopes'][n], '.3f'):>14}" for n in names))


def verdict_line(names: list[str], mismatches: list[dict], dtype: str, epochs: int, census: dict) -> str:
    from lstm_numpy import rtol_for
    others = [n for n in names if n != REFERENCE]
    if mismatches:
        failed = sorted({m["backend"] for m in mismatches})
        return (f"VERDICT: FAIL: {', '.join(failed)} did not match the numpy reference within rtol "
                f"{rtol_for(dtype):g} ({dtype}): {mismatches[0]['message']}")
    if not others:
        skipped = [n for n, s in census.items() if not s.selected]
        return ("VERDICT: only the numpy reference ran" + (f" ({', '.join(skipped)} skipped)" if skipped else "")
                + "; nothing to compare.")
    return (f"VERDICT: PASS: {', '.join(others)} agree with the numpy reference within rtol {rtol_for(dtype):g} "
            f"({dtype}) on every epoch's train and valid loss ({epochs} epochs) and the final parameters.")


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def fit_slope(sizes, seconds) -> float | None:
    """Least-squares slope of log(seconds) against log(size); None with fewer than two timed points."""
    points = [(s, t) for s, t in zip(sizes, seconds) if t]
    if len({s for s, _ in points}) < 2:
        return None
    x, y = np.log([s for s, _ in points]), np.log([t for _, t in points])
    return float(np.polyfit(x, y, 1)[0])


def check_out_dir(path: Path) -> None:
    from lstm_numpy.errors import UserError
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a folder; give a folder for the results.")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {path} cannot be created or written (no write permission in {existing}); "
                        f"choose another folder.")


def build_workloads(args) -> list[tuple[str, int | None, object]]:
    """[(label, sweep value, Workload)]: one for a plain run, one per size for a sweep."""
    from data import make_workload
    from data.series import load_series
    from lstm_numpy.errors import UserError
    if (args.data is None) != (args.column is None):
        raise UserError("--data and --column go together: give the CSV file and the name of its numeric column.")
    series = load_series(args.data, args.column) if args.data else None
    overrides = {"hidden": args.hidden, "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs,
                 "samples": args.samples, "seq_len": args.seq_len}
    options = {"threads": args.threads, "kernel_version": args.kernel_version}
    if args.sweep is None:
        return [("main", None, make_workload(args.workload, seed=args.seed, series=series, **overrides, **options))]
    param, values = args.sweep
    if overrides[param] is not None:
        raise UserError(f"{SWEEP_OPTION[param]} and --sweep {param}=... both set the {param}; give only the sweep.")
    if param == "samples" and args.workload not in ("heavy", "gpu"):
        raise UserError(f"the {args.workload} workload's size is fixed by its series; sweep samples on heavy or gpu.")
    if param == "seq_len" and args.workload == "seed":
        raise UserError("the seed workload's windows are fixed (T=11); sweep seq-len on light, heavy or gpu.")
    return [(f"{param}={value}", value,
             make_workload(args.workload, seed=args.seed, series=series, **{**overrides, param: value}, **options))
            for value in values]


def check_threads(threads: int | None) -> None:
    from lstm_numpy.errors import UserError
    if threads is None:
        return
    try:
        import numba
        limit = numba.config.NUMBA_NUM_THREADS
    except ImportError:
        limit = os.cpu_count() or 1
    if threads > limit:
        raise UserError(f"--threads {threads} exceeds the {limit} threads Numba may use here "
                        f"(NUMBA_NUM_THREADS); give at most {limit}.")


def run(args, say, progress: Progress) -> int:
    """Everything after option parsing; returns the exit code (UserError and non-finite losses propagate)."""
    import traceback

    import lstm_numpy
    from lstm_numpy.errors import NonFiniteLossError, UserError
    from reports.machine import describe_machine, matmul_gflops
    from reports.resultfiles import SCHEMA, results_stem, write_results

    out_dir = Path(args.out) if args.out else default_out_dir()
    check_out_dir(out_dir)
    check_threads(args.threads)
    points = build_workloads(args)
    names, census = select_backends(args.backends, args.cuda_simulator)
    for name, status in census.items():
        if not status.selected:
            say(f"skipped {name}: {(status.reason or status.skip or 'not requested').rstrip('.')}.")
        elif status.simulator:
            say(f"{name} runs on Numba's CUDA simulator: its losses are checked, it is not timed.")
    if args.backends is not None and REFERENCE not in args.backends:
        say(f"added the numpy reference to compare {', '.join(args.backends)} with.")

    matmul = matmul_gflops(MATMUL_N) if any(not census[n].simulator for n in names) else None
    if matmul and REFERENCE in names:
        worst = max(epoch_flops(w.shapes, w.config.task) for _, _, w in points) / (matmul[f"{args.dtype}_gflops"] * 1e9)
        if worst > 60:
            say(f"note: the numpy reference needs at least {worst:.0f} s per epoch here (at the matmul rate); "
                f"--epochs 1 or smaller sizes keep the run short.")
    compiled: set = set()
    runs, mismatches = [], []
    for label, sweep_value, workload in points:
        params = workload.initial_params(args.dtype)
        results, histories, failed = {}, {}, {}
        where = f" at {label}" if args.sweep is not None else ""
        for name in names:
            if args.sweep is not None:
                progress.begin(name)
                progress.note(f"sweep point {label}")
            try:
                results[name], histories[name] = run_backend(census[name], workload, params, progress, compiled,
                                                             breakdown=args.sweep is None)
            except NonFiniteLossError as exc:
                if name == REFERENCE:       # the run itself diverges: exit 3
                    raise NonFiniteLossError(f"{name}{where}: {exc}", exc.epoch, exc.minibatch) from None
                # the reference trained cleanly, so a diverging backend disagrees with it (exit 1)
                failed[name] = str(exc)
                print(f"run_comparison.py: {name}{where}: {exc}", file=sys.stderr)
                mismatches.append({"backend": name, "label": label,
                                   "message": f"{name}{where} diverged where the reference did not: {exc}"})
            except UserError:
                raise
            except Exception as exc:      # a bug in a backend fails the verdict; the others still run
                if name == REFERENCE:
                    raise
                failed[name] = traceback.format_exc()
                print(f"run_comparison.py: {name}{where} failed:\n{failed[name]}", file=sys.stderr)
                mismatches.append({"backend": name, "label": label,
                                   "message": f"{name}{where} raised {type(exc).__name__}: {exc}"})
        derived_rates(results, workload, matmul, args.dtype)
        mismatches += compare_with_reference(results, histories, args.dtype, label)
        shapes = workload.shapes
        runs.append({"label": label, "sweep_value": sweep_value, "results": results, "failed": failed,
                     "workload": {"name": workload.name, "task": workload.config.task, "shapes": shapes,
                                  "epochs": workload.config.epochs, "lr": workload.config.lr,
                                  "flops_per_epoch": epoch_flops(shapes, workload.config.task),
                                  "flops_per_training_step": training_flops(
                                      shapes["T"], shapes["B"], shapes["D"], shapes["H"], shapes["Y"],
                                      workload.config.task)}})
        if args.sweep is None:
            say(lambda: print_loss_log(workload, results, args.dtype))

    sweep = None
    if args.sweep is not None:
        param, values = args.sweep
        times = {n: [run["results"].get(n, {}).get("median_epoch_seconds") for run in runs] for n in names}
        sweep = {"param": param, "values": values, "median_epoch_seconds": times,
                 "slopes": {n: fit_slope(values, times[n]) for n in names}}
        say(lambda: print_sweep(sweep, names))

    epochs = points[0][2].config.epochs
    line = verdict_line(names, mismatches, args.dtype, epochs, census)
    print(line, flush=True)
    cuda_stats = next((r["stats"] for run in runs for r in run["results"].values() if r["is_device"]), None)
    machine = describe_machine(cuda_stats)
    if args.sweep is None:
        say(lambda: print_timing(runs[0]["results"], matmul, args.dtype, machine))
    exit_code = EXIT_DISAGREE if mismatches else EXIT_OK

    first = points[0][2]
    document = {
        "schema": SCHEMA, "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": list(args.argv), "exit_code": exit_code,
        "verdict": {"agree": not mismatches, "line": line, "reference": REFERENCE, "dtype": args.dtype,
                    "rtol": lstm_numpy.rtol_for(args.dtype), "compared": [n for n in names if n != REFERENCE],
                    "mismatches": mismatches},
        "config": {"workload": args.workload, "backends": names, "epochs": epochs, "lr": first.config.lr,
                   "batch_size": first.config.batch_size, "hidden": first.sizes[1], "seq_len": first.shapes["T"],
                   "samples": first.shapes["N_train"], "dtype": args.dtype, "threads": args.threads,
                   "seed": args.seed, "kernel_version": args.kernel_version,
                   "data": os.path.abspath(args.data) if args.data else None, "column": args.column,
                   "cuda_simulator": args.cuda_simulator,
                   "sweep": {"param": args.sweep[0], "values": args.sweep[1]} if args.sweep else None,
                   "train_config": dataclasses.asdict(first.config)},
        "machine": machine,
        "reference_matmul": matmul,
        "availability": {n: {"available": s.reason is None, "reason": s.reason, "skip": s.skip,
                             "selected": s.selected, "simulator": s.simulator, "describe": s.describe}
                         for n, s in census.items()},
        "runs": runs,
        "sweep": sweep,
    }
    json_path, csv_path = write_results(str(out_dir), results_stem(args.workload), document)
    print(f"results: {json_path}")
    print(f"         {csv_path}")
    return exit_code


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def main(argv=None) -> int:
    """Run the harness with these command-line options; return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:          # --help (0) or a bad option (2, already explained on stderr)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = argv
    from lstm_numpy.errors import NonFiniteLossError, UserError

    def say(text_or_printer):
        if args.quiet:
            return
        if callable(text_or_printer):
            text_or_printer()
        else:
            print(text_or_printer)

    try:
        if args.cuda_simulator:
            enable_cuda_simulator()
        code = run(args, say, Progress(stdout_is_terminal() and not args.quiet))
        if args.report and code == EXIT_OK:
            from reports.build import build_report
            say(f"report: {build_report(default_out_dir().parent, args.out or default_out_dir())}")
        return code
    except UserError as exc:
        print(f"run_comparison.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLossError as exc:
        print(f"run_comparison.py: {exc}", file=sys.stderr)
        return EXIT_DIVERGED


if __name__ == "__main__":
    sys.exit(main())
