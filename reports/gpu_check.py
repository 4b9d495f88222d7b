"""Check every CUDA kernel version against the reference on the GPU, then time them: ``parallel-lstm gpu-check``.

    parallel-lstm gpu-check --out DIR [--workloads light,heavy,gpu] [--versions 1,2,3,4] [--repeats 5]
                                [--baseline-batches 4] [--dtype float32] [--max-seconds S]

The llm.c pattern: first every version against the NumPy reference on the GPU (loss_and_grads
at sizes that cross tiles, both tasks, float64 and float32, and a 3-epoch training run of
``light``); only if all match, every version is timed against the baselines on each workload,
measured as run_comparison.py measures (reports/measuring.py): compile time apart, a training run
of each (CHECK_EPOCHS epochs on light, where its losses are checked against the reference; one
elsewhere), then ``--repeats`` interleaved rounds of one epoch of every baseline and version
(medians with quartiles, speedups from the paired rounds, the phase breakdown), and one warning line
when the machine was busy or a spread is wide.

Baselines: numpy and numba_cpu, and PyTorch's nn.LSTM (reports/torch_baseline.py; cuDNN with TF32
off on a GPU) wherever torch imports. The CPU baselines on heavy and gpu train and are timed on the
first ``--baseline-batches`` minibatches and one validation chunk, scaled to a full epoch (their
results say so: ``extrapolated_from_minibatches``); on light, and torch on a GPU, the whole workload.

Napkin math: every CUDA timing is printed beside lstm_numba_cuda.napkin's prediction for its version,
workload and dtype (the measured epoch as a multiple of the prediction, and the fraction of the FMA
peak its FLOPs reach), recorded as the result's ``napkin``.

A time budget, ``--max-seconds S`` (from the start, the validation included): before each workload
the entries that fit are chosen (the versions first, then numpy, then the other baselines; cheapest
first within each) from estimated costs
(reports/gpu_budget.py); the others are skipped with the reason; the timing rounds stop early when
another would not fit. Each workload's results files are written the moment its rounds end, so a
failure, Ctrl-C or SIGTERM later loses none of them: the run then ends with one line saying what
stopped it and what stands. With a budget, or after a skip or a stop, a last file ``gpu_check-plan``
records what became of every (workload, entry) pair.

Results: per workload and version a pair of files of the harness's schema (reports/resultfiles.py),
``<workload>-gpu_check-v<N>``, holding that version's validation rows; after a failed validation,
``gpu_check-validation`` with every row and no runs. On Numba's CUDA simulator it refuses to report
timings. Exit status: 0 every check matched; 1 a check failed; 2 bad input, no GPU or the simulator;
3 training diverged; 4 stopped by an error (what was written stands); 130 interrupted (Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import time
import traceback

import numpy as np

from parallel_lstm import lstm_numpy
from parallel_lstm.data.workloads import make_workload, with_config
from parallel_lstm.lstm_numpy.backends import cuda_simulator_on
from parallel_lstm.lstm_numpy.checks import assert_close, assert_same_history
from parallel_lstm.lstm_numpy.contract import TASKS, Dataset, batch_bounds
from parallel_lstm.lstm_numpy.errors import NonFiniteLossError, UserError
from parallel_lstm.lstm_numpy.flops import epoch_flops
from parallel_lstm.reports import gpu_budget, resultfiles
from parallel_lstm.reports import machine as machine_facts
from parallel_lstm.reports.census import REFERENCE, backend_status, select_backends
from parallel_lstm.reports.commands import prog
from parallel_lstm.reports.console import Progress, fmt
from parallel_lstm.reports.gpu_budget import Budget, Plan
from parallel_lstm.reports.machine import describe_machine
from parallel_lstm.reports.measuring import (apply_rounds, derived_rates, matmul_gflops, measure_backend, noise_report, run_rounds,
                               timed_entry)
from parallel_lstm.reports.options import (EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USAGE, OneSentenceParser, choice_list,
                                           parse_or_exit, positive_float, positive_int, run_tool)
from parallel_lstm.reports.verdict import compare_with_reference, verdict_line, verdict_record

TOOL = "reports.gpu_check"
CUDA = "numba_cuda"
PEER = "torch"
WORKLOADS = ("light", "heavy", "gpu")
FULL_BASELINES = ("light",)      # elsewhere a full CPU epoch would take minutes: a sample is timed
VALIDATION_SIZES = [(5, 7, 3, 37, 3), (33, 3, 1, 130, 2), (1, 1, 2, 3, 3)]   # (B, T, D, H, Y), crossing tiles
CHECK_EPOCHS = 2     # the training run checks the losses (on light); the timing is the interleaved rounds
EXIT_STOPPED = 4           # an unexpected error after some results were written
PROG = prog("gpu-check")
clock = time.monotonic           # the budget's clock (tests replace it)


def build_parser(kernel_versions) -> OneSentenceParser:
    parser = OneSentenceParser(prog=PROG, description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--out", required=True, help="folder for the JSON and CSV results (created if missing)")
    add("--workloads", type=choice_list(str, WORKLOADS, "workload", "workloads"), default=list(WORKLOADS),
        help=f"comma-separated workloads (default: {','.join(WORKLOADS)})")
    add("--versions", type=choice_list(int, kernel_versions, "kernel version", "kernel versions"),
        default=list(kernel_versions), help="comma-separated kernel versions (default: every one"
                                            + "".join(f", {v}" for v in kernel_versions) + ")")
    add("--repeats", type=positive_int, default=5,
        help="interleaved timing rounds of one epoch per backend and version (default: 5)")
    add("--baseline-batches", type=positive_int, default=4,
        help="minibatches the CPU baselines time on heavy and gpu, then scaled to an epoch (default: 4)")
    add("--dtype", default="float32", choices=["float32", "float64"], help="dtype of the timings (default: float32)")
    add("--max-seconds", type=positive_float, default=None,
        help="time budget of the whole run, validation included: what would not fit is skipped and recorded "
             "(default: none)")
    return parser


def validation_workload():
    """The training check's workload: light, 3 epochs, clipped gradients."""
    return with_config(make_workload("light", epochs=3), clip_norm=1.0)


def checked(rows: list, test, **row) -> None:
    """Run one validation ``test``; append ``row`` with ok and the assertion message, if any."""
    try:
        test()
        rows.append({**row, "ok": True, "error": ""})
    except AssertionError as exc:
        rows.append({**row, "ok": False, "error": str(exc)})


def validate(cuda, reference, versions) -> list[dict]:
    """Every version against the reference on the GPU; one row per check, each with ok True/False."""
    rows = []
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        for B, T, D, H, Y in VALIDATION_SIZES:
            params = lstm_numpy.init_params(D, H, Y, seed=1, dtype=dtype, forget_bias=0.5)
            for task in TASKS:
                X = rng.normal(size=(B, T, D)).astype(dtype)
                Yt = rng.normal(size=(B, Y)).astype(dtype) if task == "regression" else rng.integers(0, Y, (B, T))
                want_loss, want = reference.loss_and_grads(params, X, Yt, task)
                for version in versions:
                    def same_gradients():
                        loss, grads = cuda.loss_and_grads(params, X, Yt, task, kernel_version=version)
                        assert_close("loss", loss, want_loss)
                        for (name, value), (_, expected) in zip(grads.items(), want.items()):
                            assert_close(name, value, expected)
                    checked(rows, same_gradients, check="loss_and_grads", version=version,
                            dtype=np.dtype(dtype).name, task=task, sizes=f"B={B} T={T} D={D} H={H} Y={Y}")
        workload = validation_workload()
        params = lstm_numpy.init_params(*workload.sizes, seed=0, dtype=dtype)
        want = reference.train(params, workload.data, workload.config)
        for version in versions:
            def same_training():
                got = cuda.train(params, workload.data, dataclasses.replace(workload.config, kernel_version=version))
                assert_same_history(f"v{version}", got, want)
            checked(rows, same_training, check="train light 3 epochs", version=version, dtype=np.dtype(dtype).name,
                    task=workload.config.task, sizes=str(workload.shapes))
    return rows


def minibatch_count(workload) -> int:
    return len(batch_bounds(len(workload.data.X_train), workload.config.batch_size)) - 1


def sample_of(workload, batches: int):
    """The workload on its first ``batches`` minibatches and one validation chunk."""
    B, d = workload.config.batch_size, workload.data
    data = Dataset(d.X_train[:batches * B], d.Y_train[:batches * B], d.X_valid[:B], d.Y_valid[:B])
    return dataclasses.replace(workload, data=data)


def runs_on_gpu(status) -> bool:
    """A baseline whose describe() names a CUDA device (PyTorch on a GPU)."""
    return str(status.describe.get("device") or "").startswith("cuda")


def baseline_workload(workload, batches: int, status=None):
    """(what a baseline runs on, the factor to a full epoch): the whole workload where it is short enough
    (FULL_BASELINES) or the baseline runs on a GPU, else its first ``batches`` minibatches."""
    if workload.name in FULL_BASELINES or (status is not None and runs_on_gpu(status)):
        return workload, 1.0
    sample = sample_of(workload, batches)
    return sample, minibatch_count(workload) / minibatch_count(sample)


def measure_baseline(status, workload, params, batches: int, progress, compiled: set) -> tuple[dict, object]:
    """A baseline trained on the whole workload, or on a sample scaled to a full epoch; (result, History)."""
    used, scale = baseline_workload(workload, batches, status)
    result, history = measure_backend(status, used, params, progress, compiled)
    if used is workload:
        return result, history
    result["epoch_seconds"] = [scale * t for t in result["epoch_seconds"]]
    for key in ("median_epoch_seconds", "user_seconds_per_epoch", "sys_seconds_per_epoch"):
        result[key] *= scale
    result["extrapolated_from_minibatches"] = minibatch_count(used)
    return result, history


def version_key(version: int) -> str:
    return f"{CUDA} v{version}"


@dataclasses.dataclass
class Session:
    """One benchmark run: its options, backends, validation rows, budget and plan, and what it has written."""

    args: argparse.Namespace
    argv: list
    names: list[str]                 # every backend that may run: the reference first, numba_cuda, peers
    census: dict
    rows: list[dict]
    budget: Budget
    plan: Plan
    progress: Progress
    matmul: dict | None = None
    written: list = dataclasses.field(default_factory=list)         # paths of the results files so far
    exit_codes: list = dataclasses.field(default_factory=list)
    in_progress: list = dataclasses.field(default_factory=list)     # (workload, entry) trained, not yet written
    calibration: dict = dataclasses.field(default_factory=dict)     # version -> measured / predicted epoch
    compiled: dict = dataclasses.field(default_factory=dict)        # version -> backends compiled (measuring)
    compiled_cpu: set = dataclasses.field(default_factory=set)
    fastest: dict = dataclasses.field(default_factory=dict)         # workload -> (seconds, version)

    def publish(self, label: str, document: dict) -> None:
        """Write one results document now (both files or neither) and say where."""
        print(document["verdict"]["line"], flush=True)
        paths = resultfiles.write_results(self.args.out, resultfiles.results_stem(label), document)
        print(f"results: {', '.join(paths)}", flush=True)
        self.written += paths
        self.exit_codes.append(document["exit_code"])


def version_document(s: Session, workload, version: int, results: dict, histories: dict, load: dict,
                     noise: dict) -> dict:
    """One version's results document: its validation rows, its timings next to the baselines'."""
    derived_rates(results, workload, s.matmul, s.args.dtype)
    names = [name for name in s.names if name in results]
    full = {name: history for name, history in histories.items()
            if "extrapolated_from_minibatches" not in results[name]}
    compared = REFERENCE in full
    mismatches = compare_with_reference(results, full, s.args.dtype, workload.name) if compared else []
    own_rows = [row for row in s.rows if row["version"] == version]
    if compared:
        line = verdict_line(names, mismatches, s.args.dtype, workload.config.epochs, s.census)
    else:
        line = (f"VERDICT: PASS: {CUDA} v{version} matched the numpy reference in all {len(own_rows)} validation "
                f"checks; the timed epochs are not compared here (the CPU baselines ran on a sample).")
    return resultfiles.results_document(
        argv=s.argv, exit_code=1 if mismatches else 0, verdict=verdict_record(line, names, mismatches, s.args.dtype),
        config=resultfiles.config_record(workload, names, s.args.dtype, repeats=s.args.repeats),
        machine=describe_machine(results[CUDA]["stats"]), reference_matmul=s.matmul, census=s.census, sweep=None,
        tool=TOOL, validation=own_rows, runs=[resultfiles.run_record("main", None, workload, results, {})],
        load=load, noise=noise, budget=s.plan.record(s.budget))


def napkin_text(result: dict) -> str:
    napkin = result.get("napkin")
    if not napkin:
        return ""
    return (f"; napkin {napkin['predicted_epoch_seconds'] * 1e3:.3f} ms ({napkin['bound']}-bound): measured "
            f"{napkin['measured_over_predicted']:.1f}x it, {100 * napkin['fraction_of_peak']:.3g}% of the "
            f"{napkin['dtype']} FMA peak")


def say_time(workload: str, backend: str, version, result: dict) -> None:
    """One line per timed backend: the median epoch of the rounds, their quartiles, the speedup over numpy,
    and for a CUDA version its napkin prediction."""
    sampled, spread = result.get("extrapolated_from_minibatches"), result["epoch_spread"] or {}
    rounds = (f"quartiles {spread['q1'] * 1e3:.3f}..{spread['q3'] * 1e3:.3f} over {result['timing_rounds']} rounds"
              if spread else "training run only")
    print(f"{workload:6s} {backend:10s} v{version or '-'} {result['median_epoch_seconds'] * 1e3:10.3f} ms/epoch "
          f"({rounds}; {fmt(result['speedup'], '.2f')}x numpy on {fmt(result['reference_blas_threads'], 'd', '?')} "
          f"BLAS threads)" + (f", scaled from {sampled} minibatches" if sampled else "") + napkin_text(result),
          flush=True)


def predictions(workload, versions, dtype: str) -> dict[int, dict]:
    """lstm_numba_cuda.napkin's prediction of each version's epoch on ``workload`` as this GPU runs it."""
    from parallel_lstm.lstm_numba_cuda import napkin
    setting = napkin.setting_here(dtype, workload.config.task)
    return {v: napkin.predict_workload(v, workload, dtype, setting) for v in versions if v in napkin.MODELS}


def entry_costs(s: Session, workload, predicted: dict) -> dict[str, float]:
    """Every entry's estimated seconds on ``workload``: compile, train and time (reports/gpu_budget.py)."""
    from parallel_lstm.lstm_numba_cuda.h200 import peak_flops
    args, costs = s.args, {}
    for backend in (n for n in s.names if n != CUDA):
        status = s.census[backend]
        used, _ = baseline_workload(workload, args.baseline_batches, status)
        flops = epoch_flops(used.shapes, used.config.task)
        if runs_on_gpu(status):
            epoch = max(flops / (gpu_budget.GPU_PEER_SHARE * peak_flops(args.dtype)),
                        minibatch_count(used) * gpu_budget.GPU_PEER_MINIBATCH_S)
        else:
            epoch = flops / (s.matmul[f"{args.dtype}_gflops"] * 1e9 * gpu_budget.CPU_SHARE)
        first = backend not in s.compiled_cpu
        costs[backend] = gpu_budget.estimated_cost(
            epoch, used.config.epochs, args.repeats, used is workload,
            gpu_budget.COMPILE_ALLOWANCE_S.get(backend, 0.0) if first else 0.0)
    for version in args.versions:
        guess = predicted[version]["predicted_epoch_seconds"] if version in predicted else 1.0
        epoch = guess * s.calibration.get(version, gpu_budget.PLAN_SLACK)
        first = not s.compiled.get(version)
        costs[version_key(version)] = gpu_budget.estimated_cost(
            epoch, workload.config.epochs, args.repeats, True, gpu_budget.COMPILE_ALLOWANCE_S[CUDA] if first else 0.0)
    return costs


def train_entry(s: Session, workload, params, entry: str, baselines: dict, versions: dict, predicted: dict):
    """Train one entry on the workload (a baseline, or a CUDA version) and return its timed trainer."""
    args = s.args
    if entry in s.census:
        status = s.census[entry]
        baselines[entry] = measure_baseline(status, workload, params, args.baseline_batches, s.progress,
                                            s.compiled_cpu)
        used, scale = baseline_workload(workload, args.baseline_batches, status)
        return timed_entry(status, used, params, phases=used is workload, scale=scale,
                           epoch_seconds=baselines[entry][0]["median_epoch_seconds"] / scale)
    version = int(entry.rsplit("v", 1)[1])
    versioned = with_config(workload, kernel_version=version)
    versions[version] = measure_backend(s.census[CUDA], versioned, params, s.progress,
                                        s.compiled.setdefault(version, set()))
    median = versions[version][0]["median_epoch_seconds"]
    if version in predicted:
        s.calibration[version] = max(1.0, median / predicted[version]["predicted_epoch_seconds"])
    return timed_entry(s.census[CUDA], versioned, params, key=entry, phases=True, epoch_seconds=median)


@dataclasses.dataclass
class Timing:
    """One workload's timings: baselines {backend: (result, History)}, versions {version: (result, History)},
    the rounds, the napkin predictions, the estimated costs, and whether the budget left the phases out."""

    workload: object
    baselines: dict
    versions: dict
    rounds: dict
    predicted: dict
    costs: dict
    without_phases: bool


def time_workload(s: Session, name: str) -> Timing:
    """Train the entries of one workload that fit the budget, then time them in interleaved rounds."""
    epochs = CHECK_EPOCHS if name in FULL_BASELINES else 1
    workload = make_workload(name, epochs=epochs)
    params = workload.initial_params(s.args.dtype)
    predicted = predictions(workload, s.args.versions, s.args.dtype)
    costs = entry_costs(s, workload, predicted)
    # the versions first (what the run is for), then the reference every speedup divides, then the rest
    chosen, reasons = gpu_budget.choose(costs, s.budget.left(),
                                        rank=lambda e: 0 if e.startswith(CUDA) else 1 if e == REFERENCE else 2)
    if not any(entry.startswith(CUDA) for entry in chosen):
        reasons.update({entry: "no CUDA version of this workload fits the budget, so there is nothing to compare "
                               "it with" for entry in chosen})
        chosen = []
    for entry, reason in reasons.items():
        s.plan.skip(name, entry, reason, costs[entry])
    baselines, versions, entries = {}, {}, []
    for entry in chosen:
        rounds_ahead = s.args.repeats * sum(e.expected_seconds for e in entries)    # of the entries trained so far
        if not s.budget.fits(costs[entry] + rounds_ahead):      # the entries before it took longer than estimated
            left = max(s.budget.left() - rounds_ahead, 0)
            s.plan.skip(name, entry, f"needs about {costs[entry]:.0f} s to train and time; {left:.0f} s of the "
                                     f"budget were left", costs[entry])
            continue
        s.in_progress.append((name, entry))
        entries.append(train_entry(s, workload, params, entry, baselines, versions, predicted))
    kept, dropped, without_phases = gpu_budget.trim_rounds(entries, s.args.repeats, s.budget.left())
    for entry in dropped:
        s.plan.skip(name, entry.key, "trained, but not one timing round of it fits the budget left",
                    costs[entry.key])
        s.in_progress.remove((name, entry.key))
        baselines.pop(entry.key, None)
        if entry.key.startswith(CUDA):
            versions.pop(int(entry.key.rsplit("v", 1)[1]))
    rounds = run_rounds(kept, s.args.repeats, s.progress, keep_going=s.budget.fits)
    return Timing(workload, baselines, versions, rounds, predicted, costs, without_phases)


def version_results(s: Session, timing: Timing, version: int) -> dict:
    """The results of one version's document: the baselines' and the version's, timed by the same rounds."""
    from parallel_lstm.lstm_numba_cuda.napkin import measured_against
    cuda_result = timing.versions[version][0]
    results = {backend: dict(result) for backend, (result, _) in timing.baselines.items()}
    results[CUDA] = cuda_result
    apply_rounds(results, timing.rounds, {CUDA: version_key(version)})
    prediction = timing.predicted.get(version)
    if prediction:
        cuda_result["napkin"] = {**prediction, **measured_against(prediction, cuda_result["median_epoch_seconds"])}
    if timing.without_phases:
        for result in results.values():
            result["breakdown_skipped"] = "left out to fit the time budget (--max-seconds)"
    return results


def benchmark(s: Session) -> None:
    """Time every version and baseline on every workload; each workload's files are written as it ends."""
    s.matmul = matmul_gflops()
    for name in s.args.workloads:
        load = {"before": machine_facts.load_reading()}
        meter = machine_facts.OthersMeter()
        timing = time_workload(s, name)
        load.update(during=meter.read(), after=machine_facts.load_reading())
        documents, timed = [], {}
        for version, (cuda_result, cuda_history) in timing.versions.items():
            results = version_results(s, timing, version)
            histories = {backend: history for backend, (_, history) in timing.baselines.items()}
            histories[CUDA] = cuda_history
            for backend, result in results.items():
                if backend != CUDA and f"{backend} ({name})" not in timed:
                    say_time(name, backend, None, result)
                    timed[f"{backend} ({name})"] = result
            say_time(name, CUDA, version, cuda_result)
            timed[f"{CUDA} v{version} ({name})"] = cuda_result
            best = s.fastest.get(name)
            if best is None or cuda_result["median_epoch_seconds"] < best[0]:
                s.fastest[name] = (cuda_result["median_epoch_seconds"], version)
            documents.append((version, results, histories))
        noise = noise_report(load, timed)
        if noise["warning"]:
            print(noise["warning"], flush=True)
        for backend in timing.baselines:
            if f"{backend} ({name})" in timed:
                s.plan.timed(name, backend, timing.costs[backend],
                             timed[f"{backend} ({name})"]["median_epoch_seconds"])
            else:
                s.plan.skip(name, backend, "trained, but no CUDA version was timed beside it")
        for version in timing.versions:
            s.plan.timed(name, version_key(version), timing.costs[version_key(version)],
                         timed[f"{CUDA} v{version} ({name})"]["median_epoch_seconds"])
        for version, results, histories in documents:
            versioned = with_config(timing.workload, kernel_version=version)
            s.publish(f"{name}-gpu_check-v{version}", version_document(s, versioned, version, results, histories,
                                                                       load, noise))
        s.in_progress = []


def failed_validation_document(rows: list[dict], failed: list[dict], names, census, dtype: str, argv) -> dict:
    """Every validation row, no runs: what a failed validation leaves behind."""
    mismatches = [{"backend": CUDA, "label": f"v{row['version']} {row['check']} {row['dtype']} {row['task']}",
                   "message": row["error"]} for row in failed]
    line = f"VERDICT: FAIL: {len(failed)} of {len(rows)} validation checks failed; nothing was timed."
    workload = validation_workload()
    return resultfiles.results_document(
        argv=argv, exit_code=1, verdict=verdict_record(line, names, mismatches, dtype),
        config=resultfiles.config_record(workload, names, dtype), machine=describe_machine(), reference_matmul=None,
        census=census, runs=[], sweep=None, tool=TOOL, validation=rows)


def plan_document(s: Session, exit_code: int) -> dict:
    """What became of every (workload, entry) pair, no runs: the last file of a budgeted or stopped run."""
    line = (f"VERDICT: PASS: all {len(s.rows)} validation checks matched the reference; this file is the run's "
            f"plan ({s.plan.summary(s.budget).split('; ', 1)[1]}), its timings are in the other files.")
    return resultfiles.results_document(
        argv=s.argv, exit_code=exit_code, verdict=verdict_record(line, s.names, [], s.args.dtype),
        config=resultfiles.config_record(validation_workload(), s.names, s.args.dtype, repeats=s.args.repeats),
        machine=describe_machine(), reference_matmul=s.matmul, census=s.census, runs=[], sweep=None, tool=TOOL,
        validation=s.rows, budget=s.plan.record(s.budget))


def refusal(status) -> str | None:
    """Why nothing may be timed here (the simulator, no GPU), or None."""
    if cuda_simulator_on():
        return ("the CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1); its timings are not GPU timings, so nothing "
                "is reported; run this on a machine with a CUDA GPU and the variable unset.")
    return status.reason


def add_peer(names: list[str], census: dict) -> None:
    """PyTorch's nn.LSTM joins the baselines wherever it imports (on a GPU: cuDNN, TF32 off)."""
    status = backend_status(PEER)
    if status.reason is not None:
        print(f"{PEER}: not timed ({status.reason})", flush=True)
        return
    status.selected = True
    census[PEER] = status
    names.append(PEER)
    facts = status.describe
    print(f"{PEER}: nn.LSTM, PyTorch {facts.get('torch')} on {facts.get('device')}"
          + (f" ({facts.get('gpu')}, cuDNN {facts.get('cudnn')}, TF32 {facts.get('tf32')})"
             if runs_on_gpu(status) else f", {facts.get('threads')} threads"), flush=True)


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM (a time-out's kill) raises KeyboardInterrupt, so that it ends the run as Ctrl-C does."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:          # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def finish(s: Session, exit_code: int, stopped: str | None = None) -> int:
    """The plan file (with a budget, or after a skip or a stop), the summary lines; the exit status."""
    before = list(s.written)
    for workload, entry in s.in_progress:
        s.plan.failed(workload, entry, f"stopped by {stopped} before its files were written")
    if s.budget.limited or s.plan.skipped() or stopped:
        try:
            s.publish("gpu_check-plan", plan_document(s, exit_code))
        except (UserError, OSError) as exc:
            print(f"{PROG}: the plan file could not be written ({exc})", file=sys.stderr)
    if s.fastest:
        print("fastest CUDA version: " + ", ".join(f"{w} v{v} ({t * 1e3:.3f} ms/epoch)"
                                                   for w, (t, v) in s.fastest.items()), flush=True)
    print(s.plan.summary(s.budget), flush=True)
    if stopped:
        print(f"{PROG}: stopped by {stopped}; the {len(before)} results files written before it stand"
              + (f" ({', '.join(os.path.basename(p) for p in before)})" if before else "")
              + ", and the plan file says what became of the rest", file=sys.stderr)
    return exit_code


def run(args, argv: list, status, budget: Budget) -> int:
    """Validate, then time; the exit status (see the module docstring)."""
    names, census = select_backends(None, use_simulator=False)
    add_peer(names, census)
    os.makedirs(args.out, exist_ok=True)
    rows = validate(status.module, census[REFERENCE].module, args.versions)
    failed = [row for row in rows if not row["ok"]]
    if failed:
        print(f"{PROG}: {len(failed)} validation checks FAILED; not timing. First: {failed[0]}", file=sys.stderr)
        document = failed_validation_document(rows, failed, names, census, args.dtype, argv)
        print(document["verdict"]["line"])
        paths = resultfiles.write_results(args.out, resultfiles.results_stem("gpu_check-validation"), document)
        print(f"results: {', '.join(paths)}")
        return 1
    print(f"all {len(rows)} validation checks match the reference", flush=True)
    sampled = [w for w in args.workloads if w not in FULL_BASELINES]
    if sampled:
        print(f"CPU baselines on {', '.join(sampled)}: timed on the first {args.baseline_batches} minibatches and one "
              f"validation chunk, scaled to an epoch (--baseline-batches)", flush=True)
    entries = [n for n in names if n != CUDA] + [version_key(v) for v in args.versions]
    s = Session(args, argv, names, census, rows, budget, Plan(args.workloads, entries), Progress(True))
    try:
        benchmark(s)
    except KeyboardInterrupt as exc:
        return finish(s, EXIT_INTERRUPTED, f"an interrupt ({str(exc) or 'Ctrl-C'})")
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return finish(s, EXIT_USAGE, "that error")
    except NonFiniteLossError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return finish(s, EXIT_DIVERGED, "the diverged training")
    except Exception as exc:    # anything else: say so, keep what was written
        traceback.print_exc()
        return finish(s, EXIT_STOPPED, f"an error ({type(exc).__name__}: {exc})")
    return finish(s, max(s.exit_codes, default=0))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    status = backend_status(CUDA)
    if status.module is None and not {"-h", "--help"} & set(argv):    # --help answers even then
        print(f"{PROG}: {status.reason}.", file=sys.stderr)
        return EXIT_USAGE
    versions = sorted(status.module.KERNEL_VERSIONS) if status.module is not None else []
    args, exit_code = parse_or_exit(build_parser(versions), argv)
    if args is None:
        return exit_code
    reason = refusal(status)
    if reason is not None:
        print(f"{PROG}: {reason}", file=sys.stderr)
        return EXIT_USAGE
    budget = Budget(args.max_seconds, clock)

    def work():
        with sigterm_interrupts():
            return run(args, argv, status, budget)
    return run_tool(PROG, work, "stopped by an interrupt ({reason}) during the validation; nothing was written")


if __name__ == "__main__":
    sys.exit(main())
