"""Check every CUDA kernel version against the reference on the GPU, then time them: ``python -m reports.gpu_check``.

    python -m reports.gpu_check --out DIR [--workloads light,heavy,gpu] [--versions 1,2,3] [--repeats 5]
                                [--baseline-batches 4] [--dtype float32]

The llm.c pattern: first every version against the NumPy reference on the GPU (loss_and_grads
at sizes that cross tiles, both tasks, float64 and float32, and a 3-epoch training run of
``light``); only if all match, every version is timed against numpy and numba_cpu on each
workload, measured as run_comparison.py measures (reports/measuring.py): compile time apart, a
CHECK_EPOCHS training run of each, then ``--repeats`` interleaved rounds of one epoch of every
backend and version (medians with quartiles, speedups from the paired rounds, the phase breakdown),
and one warning line when the machine was busy or a spread is wide. The CPU baselines on heavy and
gpu train and are timed on ``--baseline-batches`` minibatches (and one validation chunk), scaled to
a full epoch; their results say so (``extrapolated_from_minibatches``). On light every backend
trains the whole workload and its losses are checked against the reference too.

Results: per workload and version a pair of files of the harness's schema
(reports/resultfiles.py), ``<workload>-gpu_check-v<N>``, holding that version's validation
rows; after a failed validation, ``gpu_check-validation`` with every row and no runs.
On Numba's CUDA simulator it refuses to report timings. Exit status: 0 every check matched;
1 a check failed; 2 bad input, no GPU or the simulator; 3 training diverged.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

import lstm_numpy
from data.workloads import make_workload, with_config
from lstm_numpy.checks import assert_close, assert_same_history
from lstm_numpy.contract import TASKS, Dataset, batch_bounds
from lstm_numpy.errors import NonFiniteLossError, UserError
from reports import resultfiles
from reports import machine as machine_facts
from reports.census import REFERENCE, backend_status, select_backends
from reports.console import Progress, fmt
from reports.machine import describe_machine
from reports.measuring import (apply_rounds, derived_rates, matmul_gflops, measure_backend, noise_report, run_rounds,
                               timed_entry)
from reports.options import OneSentenceParser, choice_list, positive_int
from lstm_numpy.backends import cuda_simulator_on
from reports.verdict import compare_with_reference, verdict_line, verdict_record

TOOL = "reports.gpu_check"
CUDA = "numba_cuda"
WORKLOADS = ("light", "heavy", "gpu")
FULL_BASELINES = ("light",)      # elsewhere a full CPU epoch would take minutes: a sample is timed
VALIDATION_SIZES = [(5, 7, 3, 37, 3), (33, 3, 1, 130, 2), (1, 1, 2, 3, 3)]   # (B, T, D, H, Y), crossing tiles
CHECK_EPOCHS = 2     # the training run checks the losses (on light); the timing is the interleaved rounds


def build_parser(kernel_versions) -> OneSentenceParser:
    parser = OneSentenceParser(prog=f"python -m {TOOL}", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--out", required=True, help="folder for the JSON and CSV results (created if missing)")
    add("--workloads", type=choice_list(str, WORKLOADS, "workload", "workloads"), default=list(WORKLOADS),
        help=f"comma-separated workloads (default: {','.join(WORKLOADS)})")
    add("--versions", type=choice_list(int, kernel_versions, "kernel version", "kernel versions"),
        default=list(kernel_versions), help=f"comma-separated kernel versions (default: every one, "
                                            f"{','.join(map(str, kernel_versions))})")
    add("--repeats", type=positive_int, default=5,
        help="interleaved timing rounds of one epoch per backend and version (default: 5)")
    add("--baseline-batches", type=positive_int, default=4,
        help="minibatches the CPU baselines time on heavy and gpu, then scaled to an epoch (default: 4)")
    add("--dtype", default="float32", choices=["float32", "float64"], help="dtype of the timings (default: float32)")
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


def baseline_workload(workload, batches: int):
    """(what a CPU baseline runs on, the factor to a full epoch): the whole workload where it is short
    enough (FULL_BASELINES), else its first ``batches`` minibatches."""
    if workload.name in FULL_BASELINES:
        return workload, 1.0
    sample = sample_of(workload, batches)
    return sample, minibatch_count(workload) / minibatch_count(sample)


def measure_baseline(status, workload, params, batches: int, progress, compiled: set) -> tuple[dict, object]:
    """A CPU backend trained on the whole workload, or on a sample scaled to a full epoch; (result, History)."""
    used, scale = baseline_workload(workload, batches)
    result, history = measure_backend(status, used, params, progress, compiled)
    if used is workload:
        return result, history
    result["epoch_seconds"] = [scale * t for t in result["epoch_seconds"]]
    for key in ("median_epoch_seconds", "user_seconds_per_epoch", "sys_seconds_per_epoch"):
        result[key] *= scale
    result["extrapolated_from_minibatches"] = minibatch_count(used)
    return result, history


def version_document(workload, version: int, results: dict, histories: dict, rows: list[dict], names, census,
                     dtype: str, matmul: dict, argv, repeats: int) -> dict:
    """One version's results document: its validation rows, its timings next to the CPU baselines."""
    derived_rates(results, workload, matmul, dtype)
    full = {name: history for name, history in histories.items()
            if "extrapolated_from_minibatches" not in results[name]}
    compared = REFERENCE in full
    mismatches = compare_with_reference(results, full, dtype, workload.name) if compared else []
    if compared:
        line = verdict_line(names, mismatches, dtype, workload.config.epochs, census)
    else:
        line = (f"VERDICT: PASS: {CUDA} v{version} matched the numpy reference in all {len(rows)} validation "
                f"checks; the CPU baselines ran on a sample, so the timed epochs are not compared.")
    return resultfiles.results_document(
        argv=argv, exit_code=1 if mismatches else 0, verdict=verdict_record(line, names, mismatches, dtype),
        config=resultfiles.config_record(workload, names, dtype, repeats=repeats),
        machine=describe_machine(results[CUDA]["stats"]), reference_matmul=matmul, census=census, sweep=None,
        tool=TOOL, validation=rows, runs=[resultfiles.run_record("main", None, workload, results, {})])


def say_time(workload: str, backend: str, version, result: dict) -> None:
    """One line per timed backend: the median epoch of the rounds, their quartiles, the speedup over numpy."""
    sampled, spread = result.get("extrapolated_from_minibatches"), result["epoch_spread"]
    print(f"{workload:6s} {backend:10s} v{version or '-'} {result['median_epoch_seconds'] * 1e3:10.3f} ms/epoch "
          f"(quartiles {spread['q1'] * 1e3:.3f}..{spread['q3'] * 1e3:.3f} over {result['timing_rounds']} rounds; "
          f"{fmt(result['speedup'], '.2f')}x numpy on {fmt(result['reference_blas_threads'], 'd', '?')} BLAS threads)"
          + (f", scaled from {sampled} minibatches" if sampled else ""), flush=True)


def version_key(version: int) -> str:
    return f"{CUDA} v{version}"


def time_workload(name: str, args, names, census, progress, compiled: dict, compiled_cpu: set):
    """Train every CPU baseline and version on one workload, then time them in interleaved rounds:
    (the workload, baselines {backend: (result, History)}, versions {version: (result, History)}, rounds)."""
    workload = make_workload(name, epochs=CHECK_EPOCHS)
    params = workload.initial_params(args.dtype)
    baselines, versions, entries = {}, {}, []
    for backend in (n for n in names if n != CUDA):
        baselines[backend] = measure_baseline(census[backend], workload, params, args.baseline_batches, progress,
                                              compiled_cpu)
        used, scale = baseline_workload(workload, args.baseline_batches)
        entries.append(timed_entry(census[backend], used, params, phases=used is workload, scale=scale,
                                   epoch_seconds=baselines[backend][0]["median_epoch_seconds"] / scale))
    for version in args.versions:
        versioned = with_config(workload, kernel_version=version)
        versions[version] = measure_backend(census[CUDA], versioned, params, progress, compiled[version])
        entries.append(timed_entry(census[CUDA], versioned, params, key=version_key(version), phases=True,
                                   epoch_seconds=versions[version][0]["median_epoch_seconds"]))
    return workload, baselines, versions, run_rounds(entries, args.repeats, progress)


def benchmark(args, names, census, rows, argv) -> list[tuple[str, dict]]:
    """Time every version and the CPU baselines on every workload; [(file stem, results document)]."""
    load = {"before": machine_facts.load_reading()}
    meter = machine_facts.OthersMeter()
    matmul, progress, documents, timed = matmul_gflops(), Progress(True), [], {}
    compiled = {version: set() for version in args.versions}     # each version compiles its own kernels
    compiled_cpu: set = set()
    for name in args.workloads:
        workload, baselines, versions, rounds = time_workload(name, args, names, census, progress, compiled,
                                                              compiled_cpu)
        for version, (cuda_result, cuda_history) in versions.items():
            versioned = with_config(workload, kernel_version=version)
            results = {backend: dict(result) for backend, (result, _) in baselines.items()}
            results[CUDA] = cuda_result
            apply_rounds(results, rounds, {CUDA: version_key(version)})
            histories = {backend: history for backend, (_, history) in baselines.items()}
            histories[CUDA] = cuda_history
            for backend, result in results.items():
                if backend != CUDA and version == args.versions[0]:
                    say_time(name, backend, None, result)
                    timed[f"{backend} ({name})"] = result
            say_time(name, CUDA, version, cuda_result)
            timed[f"{CUDA} v{version} ({name})"] = cuda_result
            own_rows = [row for row in rows if row["version"] == version]
            documents.append((f"{name}-gpu_check-v{version}",
                              version_document(versioned, version, results, histories, own_rows, names, census,
                                               args.dtype, matmul, argv, args.repeats)))
    load.update(during=meter.read(), after=machine_facts.load_reading())
    noise = noise_report(load, timed)
    for _, document in documents:
        document.update(load=load, noise=noise)
    if noise["warning"]:
        print(noise["warning"], flush=True)
    return documents


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


def refusal(status) -> str | None:
    """Why nothing may be timed here (the simulator, no GPU), or None."""
    if cuda_simulator_on():
        return ("the CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1); its timings are not GPU timings, so nothing "
                "is reported; run this on a machine with a CUDA GPU and the variable unset.")
    return status.reason


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    status = backend_status(CUDA)
    if status.module is None:
        print(f"gpu_check: {status.reason}.", file=sys.stderr)
        return 2
    try:
        args = build_parser(sorted(status.module.KERNEL_VERSIONS)).parse_args(argv)
    except SystemExit as exc:          # --help (0) or a bad option (2, already explained on stderr)
        return exc.code if isinstance(exc.code, int) else 2
    reason = refusal(status)
    if reason is not None:
        print(f"gpu_check: {reason}", file=sys.stderr)
        return 2
    try:
        names, census = select_backends(None, use_simulator=False)
        os.makedirs(args.out, exist_ok=True)
        rows = validate(status.module, census[REFERENCE].module, args.versions)
        failed = [row for row in rows if not row["ok"]]
        if failed:
            print(f"gpu_check: {len(failed)} validation checks FAILED; not timing. First: {failed[0]}", file=sys.stderr)
            documents = [("gpu_check-validation",
                          failed_validation_document(rows, failed, names, census, args.dtype, argv))]
        else:
            print(f"all {len(rows)} validation checks match the reference", flush=True)
            documents = benchmark(args, names, census, rows, argv)
    except UserError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 3
    for label, document in documents:
        print(document["verdict"]["line"])
        paths = resultfiles.write_results(args.out, resultfiles.results_stem(label), document)
        print(f"results: {', '.join(paths)}")
    return max(document["exit_code"] for _, document in documents)


if __name__ == "__main__":
    sys.exit(main())
