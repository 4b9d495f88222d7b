"""The comparison harness: train every backend on one workload, prove they agree, time them.

    python run_comparison.py                                   # seed workload, every backend this machine runs
    python run_comparison.py --workload heavy --threads 2      # a CPU busy for seconds per epoch
    python run_comparison.py --workload light --sweep hidden=16,32,64,128
    python run_comparison.py --workload heavy --sweep threads=1,2 --epochs 1   # strong scaling of the CPU backends
    python run_comparison.py --backends numpy,numba_cpu,torch  # with PyTorch's nn.LSTM as a peer row
    python run_comparison.py --backends numba_cuda --cuda-simulator --epochs 1   # CUDA kernels without a GPU
    python run_comparison.py --workload light --clip-norm 1 --save-params light.npz   # clipped; keep the weights
    python run_comparison.py --workload light --init-params light.npz --full-log      # start from them; every epoch

In order, it:
1. checks every option (a bad one: one sentence on stderr, exit 2, nothing written), --save-params's path and
   --init-params's file against the workload's sizes and dtype included (reports/checkpoints.py);
2. builds the workload (data/workloads.py) and one set of initial parameters for all backends (the workload's
   seeded ones, or --init-params's);
3. reads the machine's load (reports/machine.py), then per backend: times the JIT compilation on a
   tiny slice of the same dtype and task (the difference between a first and a second tiny run) and
   trains the configured epochs (the loss log, printed for the first and last epochs and every k-th, or every
   epoch with --full-log; per-epoch wall time, CPU user and sys time, peak memory);
4. times ``--repeats`` interleaved rounds of one epoch per backend (A, B, A, B, ...) on fresh trainers
   with the training run's orders, with the forward and forward+backward phases, a one-thread trainer
   of every CPU backend that runs on more threads, and for ``--sweep threads=...`` one trainer per
   thread count; reads the load again;
5. compares every backend's per-epoch training and validation loss and final parameters with
   the NumPy reference (``lstm_numpy.checks.assert_same_history``, rtol 1e-10 in float64, 1e-4 in float32)
   and prints one verdict line, and one warning line when the machine was busy or a spread is wide;
6. prints the timing tables, saves the reference's final weights with --save-params (lstm_numpy.save_params),
   and writes JSON and CSV results (schema: ``reports/resultfiles.py``).

Portability: the POSIX-only readings (peak memory, load average, /proc/stat) are guarded in reports/machine.py;
where they are missing the harness still runs, they are null in the results, and one note says so.

Exit codes: 0 every backend agrees with the reference; 1 one disagrees; 2 bad input; 3 training
diverged (a non-finite or exploding loss); 130 interrupted (Ctrl-C).

Measuring (reports/measuring.py, shared with the bench tools): compilation is never inside an epoch
time; every figure is the median of the interleaved rounds with its quartiles and extremes;
``run_epoch`` returns host losses, so a GPU epoch is synchronised before the clock is read; speedup =
T_numpy / T_backend of each round (NumPy on its BLAS's threads, stated next to it; --blas-threads pins
them); parallel efficiency = T(1 thread) / (p x T(p threads)) of the same backend, None without a
one-thread time; GFLOP/s come from ``training_flops`` and are also given as a fraction of NumPy's
2048x2048 matmul rate measured in the same run. A backend on Numba's CUDA simulator is checked
for equal losses but never timed.

This file holds the command line and the order of the steps; the steps live in reports/
(census.py, measuring.py, verdict.py, console.py, sweep.py, resultfiles.py, machine.py, checkpoints.py).
"""
from __future__ import annotations

# Nothing imported here imports Numba (tests/test_run_comparison.py checks it): --cuda-simulator
# works only if main() can still set NUMBA_ENABLE_CUDASIM before Numba's first import.
import argparse
import os
import sys
import traceback
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # `python run_comparison.py` in a checkout: this folder is the parallel_lstm package (which an install
    # maps onto it too), so the checkout's own code runs whether or not the project is installed.
    import types
    sys.modules["parallel_lstm"] = types.ModuleType("parallel_lstm")
    sys.modules["parallel_lstm"].__path__ = [os.path.dirname(os.path.abspath(__file__))]

from parallel_lstm.data import make_workload
from parallel_lstm.data.series import series_option
from parallel_lstm.data.light import TRANSFORMS
from parallel_lstm.data.workloads import DEFAULTS, WORKLOADS
from parallel_lstm.lstm_numpy.backends import BACKENDS
from parallel_lstm.lstm_numpy.errors import NonFiniteLossError, UserError
from parallel_lstm.lstm_numpy.flops import epoch_flops
from parallel_lstm.lstm_numpy.params import save_params
from parallel_lstm.reports import machine as machine_facts
from parallel_lstm.reports.build import build_report
from parallel_lstm.reports.census import REFERENCE, check_threads, select_backends
from parallel_lstm.reports.checkpoints import check_save_path, load_initial_params
from parallel_lstm.reports.commands import prog
from parallel_lstm.reports.console import Progress, print_loss_log, print_scaling, print_sweep, print_timing
from parallel_lstm.reports.measuring import (apply_rounds, blas_pinned, derived_rates, labelled_results, matmul_gflops,
                               measure_backend, noise_report, plan_entries, run_rounds, scaling_record)
from parallel_lstm.reports.options import (EXIT_DISAGREE, EXIT_OK, OneSentenceParser, backend_list, non_negative_int,
                                           parse_or_exit, positive_float, positive_int, run_tool)
from parallel_lstm.reports import resultfiles
from parallel_lstm.reports.resultfiles import config_record, default_results_dir as default_out_dir, results_document, run_record
from parallel_lstm.lstm_numpy.backends import enable_cuda_simulator
from parallel_lstm.reports.sweep import SWEEP_OPTION, THREADS, sweep_spec, sweep_summary
from parallel_lstm.reports.verdict import compare_with_reference, verdict_line, verdict_record

PROG = prog("compare")       # the name usage lines and errors use; python run_comparison.py runs the same
MATMUL_N = 2048              # the reference matmul's size (tests shrink it)
LONG_TIMING_S = 60.0         # say how long the timing rounds will take when it is longer than this
DEFAULT_REPEATS = 5          # timing rounds (tests lower it)


def build_parser() -> argparse.ArgumentParser:
    """The harness's options, each with its default in the help; errors are one sentence, exit 2."""
    table = "\n".join(f"  {name:6} {task:14} H={H:<4} B={B:<4} lr={lr:<4} epochs={epochs}"
                      + (f" samples={N}" if N else "") + (f" seq-len={T}" if T else "")
                      + (f" forget-bias={fb}" if fb else "")
                      for name, (task, H, B, lr, epochs, N, T, fb) in DEFAULTS.items())
    parser = OneSentenceParser(
        prog=PROG,
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
        help=f"comma-separated backends from {', '.join(BACKENDS)}, and torch (PyTorch's nn.LSTM as a peer "
             "row, when PyTorch is installed); the numpy reference is always added when another backend is "
             "compared (default: every backend this machine can run, without torch; numba_cuda only with a "
             "GPU, or with --cuda-simulator)")
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
        help="threads of the CPU backends numba_cpu and torch (default: numba_cpu each epoch takes the cores "
             "other processes leave free, torch its own default); the numpy reference uses its BLAS's, see "
             "--blas-threads")
    add("--blas-threads", type=positive_int, metavar="N",
        help="pin NumPy's BLAS, and so the numpy reference every speedup divides, to N threads (threadpoolctl) "
             "(default: the BLAS's own count, stated next to every speedup)")
    add("--repeats", type=positive_int, default=DEFAULT_REPEATS, metavar="R",
        help="interleaved timing rounds of one epoch per backend after the training runs; every time is "
             f"the median of R rounds with its quartiles (default: {DEFAULT_REPEATS})")
    add("--no-one-thread", action="store_true",
        help="do not time a one-thread trainer of each CPU backend in the rounds (then parallel efficiency "
             "is not measured; default: timed wherever a backend runs on more than one thread)")
    add("--weak", action="store_true",
        help="with --sweep threads=...: weak scaling, the samples grow with the threads (heavy and gpu only) "
             "(default: strong scaling, the same work on every thread count)")
    add("--clip-norm", type=positive_float, metavar="C",
        help="clip every minibatch's gradients to global norm C before the SGD step, in every backend "
             "(TrainConfig.clip_norm) (default: no clipping)")
    add("--init-params", metavar="FILE.npz",
        help="start every backend from these weights (a file written by --save-params or lstm_numpy.save_params; "
             "its D, H, Y and dtype must fit the workload and --dtype) (default: the workload's seeded weights)")
    add("--save-params", metavar="FILE.npz",
        help="save the numpy reference's final weights there after training (a new .npz file in an existing "
             "folder; never overwritten; any backend can start from it) (default: not saved)")
    add("--transform", choices=TRANSFORMS, default=None,
        help="light only: take logarithms of the series (log), not (none), or only when every value is positive "
             "(auto); the run says which was used (default: auto)")
    add("--seed", type=non_negative_int, default=0,
        help="seed of the initial weights, the minibatch order and synthetic data (default: 0)")
    add("--kernel-version", type=positive_int, metavar="V",
        help="CUDA kernel version of numba_cuda (default: the backend's fastest correct one)")
    add("--data", metavar="FILE", help="CSV file whose column replaces AirPassengers in seed and light "
                                       "(default: the shipped AirPassengers.csv); needs --column")
    add("--column", metavar="NAME", help="the numeric column of --data to use (default: none; needs --data)")
    add("--sweep", type=sweep_spec, metavar="PARAM=V1,V2,...",
        help="run every backend at each size of samples, hidden, batch or seq-len and fit the log-log "
             "slope of epoch time against size; or threads=1,2,...: time the CPU backends at each thread "
             "count (up to the cores present), with speedup, parallel efficiency and Amdahl's serial "
             "fraction (default: no sweep)")
    add("--out", metavar="DIR", default=None,
        help="folder for the JSON and CSV results (default: reports/results/ of this checkout)")
    add("--report", action="store_true",
        help="after the run, build the course report (figures and REPORT.md in reports/) from the newest "
             "results files in the results folder and a 10-seed forecast run, as parallel-lstm report does "
             "(default: off)")
    add("--full-log", action="store_true",
        help="print every epoch's losses (default: the first and last epochs and every k-th, 10 to 20 lines; "
             "every epoch is compared with the reference either way)")
    add("--quiet", action="store_true",
        help="print only the verdict line, the noise warning if any, the results files and --save-params's file "
             "(default: loss log, tables, notes, and progress lines on stderr)")
    return parser


def check_out_dir(path: Path) -> None:
    """A UserError, before anything runs, when the results folder cannot be created or written."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a folder; give a folder for the results.")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {path} cannot be created or written (no write permission in {existing}); "
                        f"choose another folder.")


def thread_counts(args) -> list[int] | None:
    """The thread counts of ``--sweep threads=...`` (1 added when missing: every ratio divides its time);
    None without that sweep. A UserError for a count beyond the cores present or an option in conflict."""
    if args.weak and (args.sweep is None or args.sweep[0] != THREADS):
        raise UserError("--weak belongs to a thread sweep: add --sweep threads=1,2,... or leave --weak out.")
    if args.sweep is None or args.sweep[0] != THREADS:
        return None
    if args.threads is not None:
        raise UserError("--threads and --sweep threads=... both set the threads; give only the sweep.")
    if args.weak and args.workload not in ("heavy", "gpu"):
        raise UserError(f"weak scaling grows the samples, fixed by the series in {args.workload}; use heavy or gpu.")
    cores = machine_facts.usable_cores() or 1
    if max(args.sweep[1]) > cores:
        raise UserError(f"--sweep threads asks for {max(args.sweep[1])} threads but this machine has {cores} "
                        f"cores; give thread counts up to {cores}.")
    check_threads(max(args.sweep[1]))
    return sorted(set(args.sweep[1]) | {1})


def config_options(args) -> dict:
    """The TrainConfig fields the command line sets besides the workload's defaults (threads aside)."""
    return {"kernel_version": args.kernel_version, "clip_norm": args.clip_norm}


def build_workloads(args) -> list[tuple[str, int | None, object]]:
    """[(label, sweep value, Workload)]: one for a plain run or a thread sweep, one per size for a size sweep."""
    series = series_option(args.data, args.column)
    overrides = {"hidden": args.hidden, "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs,
                 "samples": args.samples, "seq_len": args.seq_len}
    if args.transform is not None:
        overrides["transform"] = args.transform      # make_workload refuses it for other workloads
    options = {"threads": args.threads, **config_options(args)}
    if args.sweep is None or args.sweep[0] == THREADS:
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


def check_kernel_version(version: int, names: list[str]) -> None:
    """--kernel-version names a CUDA kernel version, so it needs the numba_cuda backend in the run."""
    if "numba_cuda" not in names:
        raise UserError(f"--kernel-version {version} selects a CUDA kernel version, but numba_cuda does not run here; "
                        f"add --backends numba_cuda (with --cuda-simulator on a machine without a GPU) or drop it.")
    from parallel_lstm.lstm_numba_cuda import KERNEL_VERSIONS    # numba_cuda runs, so importing it (and Numba) is due anyway
    if version not in KERNEL_VERSIONS:
        raise UserError(f"--kernel-version {version} does not exist; choose one of "
                        f"{', '.join(map(str, sorted(KERNEL_VERSIONS)))}.")


def announce(census: dict, requested: list[str] | None, say) -> None:
    """Say which backends were left out and why, which run on the simulator, and an added reference."""
    for name, status in census.items():
        if not status.selected:
            say(f"skipped {name}: {(status.reason or status.skip or 'not requested').rstrip('.')}.")
        elif status.simulator:
            say(f"{name} runs on Numba's CUDA simulator: its losses are checked, it is not timed.")
    if requested is not None and REFERENCE not in requested:
        say(f"added the numpy reference to compare {', '.join(requested)} with.")


def weak_workloads(args, workload):
    """For --weak: the workload on p threads has p times the training samples."""
    base = workload.shapes["N_train"]
    overrides = {"hidden": args.hidden, "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs,
                 "seq_len": args.seq_len, **config_options(args)}
    return lambda p: make_workload(args.workload, seed=args.seed, samples=base * p, **overrides)


def train_point(label: str, workload, params, names: list[str], census: dict, args, progress: Progress,
                compiled: set) -> tuple[dict, dict, dict, list[dict]]:
    """Train every backend on one workload: (results, histories, failed, mismatches so far).

    A backend other than the reference that raises or diverges fails the verdict while the others
    still run; the reference diverging stops the run (exit 3).
    """
    results, histories, failed, mismatches = {}, {}, {}, []
    where = f" at {label}" if label != "main" else ""
    for name in names:
        if where:
            progress.begin(name)
            progress.note(f"sweep point {label}")
        try:
            results[name], histories[name] = measure_backend(census[name], workload, params, progress, compiled)
        except NonFiniteLossError as exc:
            if name == REFERENCE:       # the run itself diverges: exit 3
                raise NonFiniteLossError(f"{name}{where}: {exc}", exc.epoch, exc.minibatch) from None
            # the reference trained cleanly, so a diverging backend disagrees with it (exit 1)
            failed[name] = str(exc)
            print(f"{PROG}: {name}{where}: {exc}", file=sys.stderr)
            mismatches.append({"backend": name, "label": label,
                               "message": f"{name}{where} diverged where the reference did not: {exc}"})
        except UserError:
            raise
        except Exception as exc:      # a bug in a backend fails the verdict; the others still run
            if name == REFERENCE:
                raise
            failed[name] = traceback.format_exc()
            print(f"{PROG}: {name}{where} failed:\n{failed[name]}", file=sys.stderr)
            mismatches.append({"backend": name, "label": label,
                               "message": f"{name}{where} raised {type(exc).__name__}: {exc}"})
    return results, histories, failed, mismatches


def measure_point(label: str, sweep_value, workload, params, names: list[str], census: dict, args, say,
                  progress: Progress, compiled: set, matmul: dict | None,
                  counts: list[int] | None) -> tuple[dict, list[dict], dict, object]:
    """Train every backend on one workload from ``params``, then time the interleaved rounds; returns (the run's
    record, its mismatches, the rounds, the reference's final parameters). ``counts``: the thread counts of a
    thread sweep, else None."""
    results, histories, failed, mismatches = train_point(label, workload, params, names, census, args, progress,
                                                         compiled)
    size_sweep = args.sweep is not None and counts is None
    # A size sweep measures how time grows with size: no phases or one-thread trainers at every point.
    entries = plan_entries(census, results, workload, params, phases=not size_sweep,
                           one_thread=not (args.no_one_thread or size_sweep), thread_counts=counts,
                           workload_for=weak_workloads(args, workload) if args.weak else None)
    expected = args.repeats * sum(entry.expected_seconds for entry in entries)
    if expected > LONG_TIMING_S:
        say(f"note: {args.repeats} interleaved timing rounds{' at ' + label if size_sweep else ''} take about "
            f"{expected:.0f} s; fewer --repeats (or --no-one-thread) shorten them.")
    rounds = run_rounds(entries, args.repeats, progress)
    apply_rounds(results, rounds)
    derived_rates(results, workload, matmul, args.dtype)
    mismatches += compare_with_reference(results, histories, args.dtype, label)
    return run_record(label, sweep_value, workload, results, failed), mismatches, rounds, histories[REFERENCE].params


def check_save_option(args) -> str | None:
    """--save-params's absolute path (checked: reports.checkpoints.check_save_path), None without it; a size
    sweep trains one model per size, so it has no one model to save."""
    if args.save_params is None:
        return None
    if args.sweep is not None and args.sweep[0] != THREADS:
        raise UserError(f"--save-params saves one model, but a sweep of {SWEEP_OPTION[args.sweep[0]]} trains one "
                        f"per size; drop one of them.")
    return check_save_path(args.save_params)


def check_blas_threads(threads: int | None) -> None:
    cores = machine_facts.usable_cores() or 1
    if threads is not None and threads > cores:
        raise UserError(f"--blas-threads {threads} exceeds the {cores} cores of this machine; give at most {cores}.")


def measure_all(args, say, progress: Progress, points, names: list[str], census: dict,
                counts: list[int] | None, initial=None) -> dict:
    """Read the load, measure every point, read the load again: {runs, mismatches, matmul, load, scaling, machine,
    final_params (the reference's, of the last point)}. ``initial``: the parameters every point starts from
    (--init-params), else each workload's seeded ones."""
    load = {"before": machine_facts.load_reading()}
    meter = machine_facts.OthersMeter()
    matmul = matmul_gflops(MATMUL_N) if any(not census[n].simulator for n in names) else None
    if matmul and REFERENCE in names:
        worst = max(epoch_flops(w.shapes, w.config.task) for _, _, w in points) / (matmul[f"{args.dtype}_gflops"] * 1e9)
        if worst > 60:
            say(f"note: the numpy reference needs at least {worst:.0f} s per epoch here (at the matmul rate); "
                f"--epochs 1 or smaller sizes keep the run short.")
    compiled: set = set()
    runs, mismatches, scaling, final_params = [], [], None, None
    for label, sweep_value, workload in points:
        params = workload.initial_params(args.dtype) if initial is None else initial
        record, point_mismatches, rounds, final_params = measure_point(
            label, sweep_value, workload, params, names, census, args, say, progress, compiled, matmul, counts)
        runs.append(record)
        mismatches += point_mismatches
        if args.sweep is None or counts is not None:
            say(lambda: print_loss_log(workload, record["results"], args.dtype, args.full_log))
        if counts is not None:
            scaling = scaling_record(rounds, list(record["results"]), counts, "weak" if args.weak else "strong")
    load["during"] = meter.read()
    load["after"] = machine_facts.load_reading()
    cuda_stats = next((r["stats"] for run in runs for r in run["results"].values() if r["is_device"]), None)
    return {"runs": runs, "mismatches": mismatches, "matmul": matmul, "load": load, "scaling": scaling,
            "machine": machine_facts.describe_machine(cuda_stats), "final_params": final_params}


def run(args, say, progress: Progress) -> int:
    """Everything after option parsing; returns the exit code (UserError and non-finite losses propagate)."""
    if args.out is not None and not args.out.strip():
        raise UserError("--out is empty; give a folder for the results, or leave --out out for reports/results/.")
    out_dir = Path(args.out) if args.out is not None else default_out_dir()
    check_out_dir(out_dir)
    save_path = check_save_option(args)
    check_threads(args.threads)
    check_blas_threads(args.blas_threads)
    counts = thread_counts(args)
    points = build_workloads(args)
    pipeline = getattr(points[0][2], "pipeline", None)
    if getattr(pipeline, "transform", None):
        say(f"light transform: {pipeline.transform} ({pipeline.transform_reason})")
    initial, initial_record = None, None
    if args.init_params is not None:
        initial, initial_record = load_initial_params(args.init_params, [(label, w) for label, _, w in points],
                                                      args.dtype)
    names, census = select_backends(args.backends, args.cuda_simulator)
    if args.kernel_version is not None:
        check_kernel_version(args.kernel_version, names)
    announce(census, args.backends, say)
    if counts is not None and counts != sorted(set(args.sweep[1])):
        say("added 1 thread to the thread sweep: every speedup and efficiency divides the one-thread time.")
    missing = machine_facts.missing_readings()
    if missing:
        say(f"note: this system cannot read {', '.join(missing)}; the results hold null there.")

    with blas_pinned(args.blas_threads):
        measured = measure_all(args, say, progress, points, names, census, counts, initial)
    runs, mismatches, matmul = measured["runs"], measured["mismatches"], measured["matmul"]
    sweep = None
    if args.sweep is not None and counts is None:
        sweep = sweep_summary(*args.sweep, runs, names)
        say(lambda: print_sweep(sweep, names))

    first = points[0][2]
    line = verdict_line(names, mismatches, args.dtype, first.config.epochs, census)
    print(line, flush=True)
    noise = noise_report(measured["load"], labelled_results(runs))
    if noise["warning"]:
        print(noise["warning"], flush=True)
    if args.sweep is None or counts is not None:
        say(lambda: print_timing(runs[0]["results"], matmul, args.dtype, measured["machine"], measured["load"]))
    if measured["scaling"]:
        say(lambda: print_scaling(measured["scaling"]))
    exit_code = EXIT_DISAGREE if mismatches else EXIT_OK
    # The reference trained to the end (its divergence stops the run); saved before the results, which name the file.
    if save_path is not None:
        save_params(save_path, measured["final_params"])
        print(f"params:  {save_path} (the numpy reference's final weights)")

    document = results_document(
        argv=args.argv, exit_code=exit_code, verdict=verdict_record(line, names, mismatches, args.dtype),
        config=config_record(first, names, args.dtype, data=args.data, column=args.column,
                             cuda_simulator=args.cuda_simulator, sweep=args.sweep, repeats=args.repeats,
                             blas_threads=args.blas_threads, one_thread=not args.no_one_thread, weak=args.weak,
                             init_params=initial_record, save_params=save_path),
        machine=measured["machine"], reference_matmul=matmul, census=census, runs=runs, sweep=sweep,
        load=measured["load"], noise=noise, scaling=measured["scaling"])
    json_path, csv_path = resultfiles.write_results(str(out_dir), resultfiles.results_stem(args.workload), document)
    print(f"results: {json_path}")
    print(f"         {csv_path}")
    return exit_code


def main(argv=None) -> int:
    """Run the harness with these command-line options; return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, exit_code = parse_or_exit(build_parser(), argv)
    if args is None:
        return exit_code
    args.argv = argv

    def say(text_or_printer):
        if args.quiet:
            return
        if callable(text_or_printer):
            text_or_printer()
        else:
            print(text_or_printer)

    def work():
        if args.cuda_simulator:
            enable_cuda_simulator()
        code = run(args, say, Progress(not args.quiet))
        if args.report and code == EXIT_OK:
            say(f"report: {build_report(default_out_dir().parent, args.out or default_out_dir())}")
        return code
    return run_tool(PROG, work)


if __name__ == "__main__":
    sys.exit(main())
