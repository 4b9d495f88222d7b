"""Benchmark numba_cpu against the NumPy reference, on every thread and on one: ``parallel-lstm bench``.

    parallel-lstm bench [--repeats 7] [--workloads seed light heavy] [--no-heavy-float32] [--out DIR]

For each workload (and ``heavy`` again in float32) it trains numpy, numba_cpu on its default threads
and numba_cpu on one thread for CHECK_EPOCHS epochs from the same initial weights and minibatch order
(the losses of both numba_cpu runs are checked against the reference), then times ``--repeats``
interleaved rounds of one epoch of each, as run_comparison.py measures (reports/measuring.py: compile
time apart, medians of the rounds with their quartiles, the phase breakdown, numpy on one BLAS thread
too where it runs on more). It prints one row per workload: speedup = T_numpy / T_numba (numpy on its
BLAS's threads, said in the header) and parallel efficiency = T_1thread / (threads x T_numba), both
medians of the paired rounds, GFLOP/s against NumPy's matmul rate (the median of 3 after a warm-up);
then one warning line when the machine was busy or a spread is wide. Per workload it writes two
results files of the harness's schema (reports/resultfiles.py): ``<workload>-cpu_bench`` (numpy and
numba_cpu on its default threads) and ``<workload>-cpu_bench-1thread`` (config threads 1, timed by the
one-thread trainer of the same rounds), which the report reads as it reads ``run_comparison.py
--threads 1`` runs.

Exit status: 0; 1 when a numba_cpu run disagrees with the reference; 2 bad input; 3 training diverged.
"""
from __future__ import annotations

import sys

import numpy as np

from parallel_lstm.data.workloads import WORKLOADS, make_workload, with_config
from parallel_lstm.reports import machine as machine_facts
from parallel_lstm.reports import resultfiles
from parallel_lstm.reports.census import REFERENCE, select_backends
from parallel_lstm.reports.commands import prog
from parallel_lstm.reports.console import Progress, fmt, spread_text
from parallel_lstm.reports.measuring import (apply_rounds, derived_rates, matmul_gflops, measure_backend, noise_report,
                               plan_entries, run_rounds)
from parallel_lstm.reports.options import OneSentenceParser, parse_or_exit, positive_int, run_tool
from parallel_lstm.reports.verdict import compare_with_reference, verdict_line, verdict_record

BACKEND = "numba_cpu"
TOOL = "reports.cpu_bench"
CHECK_EPOCHS = 2     # the training run checks the losses; the timing is the interleaved rounds


def build_parser() -> OneSentenceParser:
    parser = OneSentenceParser(prog=prog("bench"), description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7,
                        help="interleaved timing rounds of one epoch per backend (default: 7)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=["seed", "light", "heavy"],
                        help="workloads to time (default: seed light heavy)")
    parser.add_argument("--no-heavy-float32", action="store_true", help="skip heavy in float32 (default: run it)")
    parser.add_argument("--out", default=None,
                        help="folder for the JSON and CSV results (default: reports/results/ of this checkout)")
    return parser


def bench_document(results: dict, histories: dict, workload, dtype: str, names: list[str], census: dict,
                   matmul: dict, machine: dict, argv: list[str], repeats: int) -> dict:
    """One results document for numpy and numba_cpu on ``workload`` (its config says the thread count)."""
    derived_rates(results, workload, matmul, dtype)
    mismatches = compare_with_reference(results, histories, dtype, "main")
    line = verdict_line(names, mismatches, dtype, workload.config.epochs, census)
    return resultfiles.results_document(
        argv=argv, exit_code=1 if mismatches else 0, verdict=verdict_record(line, names, mismatches, dtype),
        config=resultfiles.config_record(workload, names, dtype, repeats=repeats, one_thread=True),
        machine=machine, reference_matmul=matmul, census=census,
        runs=[resultfiles.run_record("main", None, workload, results, {})], sweep=None, tool=TOOL)


def bench_workload(name: str, dtype: str, repeats: int, names: list[str], census: dict, matmul: dict,
                   machine: dict, progress: Progress, compiled: set, argv: list[str]) -> tuple[dict, dict]:
    """(default threads, one thread) results documents of one workload and dtype."""
    workload = make_workload(name, epochs=CHECK_EPOCHS)
    one_thread = with_config(workload, threads=1)
    params = workload.initial_params(dtype)
    results, histories = {}, {}
    for backend in names:
        results[backend], histories[backend] = measure_backend(census[backend], workload, params, progress, compiled)
    single, single_history = measure_backend(census[BACKEND], one_thread, params, progress, compiled)
    rounds = run_rounds(plan_entries(census, results, workload, params, phases=True, one_thread=True), repeats,
                        progress)
    apply_rounds(results, rounds)
    # on a one-core machine numba_cpu's own trainer already runs on one thread
    apply_rounds({BACKEND: single}, rounds, {BACKEND: f"{BACKEND}@1" if f"{BACKEND}@1" in rounds else BACKEND})
    every = bench_document(results, histories, workload, dtype, names, census, matmul, machine, argv, repeats)
    one = bench_document({REFERENCE: dict(results[REFERENCE]), BACKEND: single},
                         {REFERENCE: histories[REFERENCE], BACKEND: single_history},
                         one_thread, dtype, names, census, matmul, machine, argv, repeats)
    return every, one


def table_row(every: dict, one: dict) -> str:
    """workload, dtype, sizes, compile and epoch times (ms), speedup, parallel efficiency, GFLOP/s, % of A@B."""
    run, dtype = every["runs"][0], every["config"]["dtype"]
    numpy_result, numba_result = run["results"][REFERENCE], run["results"][BACKEND]
    t_one = one["runs"][0]["results"][BACKEND]["median_epoch_seconds"]
    s = run["workload"]["shapes"]
    sizes = f"N={s['N_train']} T={s['T']} D={s['D']} H={s['H']} B={s['B']}"
    compile_ms = fmt(numba_result["compile_seconds"] and 1e3 * numba_result["compile_seconds"], "9.1f")
    quartiles = {k: 1e3 * v for k, v in numba_result["epoch_spread"].items()}
    return (f"{run['workload']['name']:9} {dtype:7} {sizes:34} {compile_ms:>9} "
            f"{1e3 * numpy_result['median_epoch_seconds']:9.2f} {1e3 * numba_result['median_epoch_seconds']:9.2f} "
            f"{spread_text(quartiles, '.2f'):>18} {1e3 * t_one:9.2f} {fmt(numba_result['threads'], 'd'):>4} "
            f"{numba_result['speedup']:7.1f}x {fmt(numba_result['parallel_efficiency'], '6.0%'):>6} "
            f"{numba_result['gflops']:8.1f} {100 * numba_result['fraction_of_matmul']:5.0f}%")


def run(args, argv: list[str]) -> int:
    names, census = select_backends([BACKEND], use_simulator=False)
    load = {"before": machine_facts.load_reading()}
    meter = machine_facts.OthersMeter()
    machine = machine_facts.describe_machine()     # before the one-thread runs change Numba's thread count
    facts = census[BACKEND].describe
    print(f"machine: {machine['cpu_model']}, {machine['logical_cores']} cores; numba {facts.get('numba')} "
          f"({facts.get('threading_layer')} threading layer, {facts.get('threads')} threads), numpy {np.__version__} "
          f"(BLAS on {fmt((machine['blas'] or {}).get('threads'), 'd', '?')} threads)")
    matmul = matmul_gflops()
    print(f"NumPy {matmul['n']}x{matmul['n']} A@B (median of {matmul['repeats']} after a warm-up): float64 "
          f"{matmul['float64_gflops']:.1f} GFLOP/s, float32 {matmul['float32_gflops']:.1f} GFLOP/s")
    points = [(name, "float64") for name in args.workloads]
    if "heavy" in args.workloads and not args.no_heavy_float32:
        points.append(("heavy", "float32"))
    progress, documents = Progress(True), []
    compiled = {dtype: set() for _, dtype in points}      # each dtype compiles its own kernels
    for name, dtype in points:
        documents.append(bench_workload(name, dtype, args.repeats, names, census, matmul, machine, progress,
                                        compiled[dtype], argv))
    load.update(during=meter.read(), after=machine_facts.load_reading())
    timed = {}
    for every, one in documents:
        point = f"{every['config']['workload']} {every['config']['dtype']}"
        timed.update({f"{name} ({point})": result for name, result in every["runs"][0]["results"].items()})
        timed[f"{BACKEND} ({point}, 1 thread)"] = one["runs"][0]["results"][BACKEND]
    noise = noise_report(load, timed)
    blas = documents[0][0]["runs"][0]["results"][BACKEND]["reference_blas_threads"]
    header = (f"{'workload':9} {'dtype':7} {'sizes':34} {'compile':>9} {'numpy':>9} {'numba':>9} {'[q1 .. q3]':>18} "
              f"{'numba 1T':>9} {'thr':>4} {'speedup':>8} {'par.eff':>6} {'GFLOP/s':>8} {'% A@B':>6}")
    print(f"median of {args.repeats} interleaved rounds each; times in ms; compile = first minus second run on a "
          f"tiny slice (- : compiled for an earlier workload); speedup = numpy on {fmt(blas, 'd', '?')} BLAS threads "
          f"/ numba; par.eff = T_1thread / (threads x T_numba)")
    print(header)
    print("-" * len(header))
    for every, one in documents:
        print(table_row(every, one))
    if noise["warning"]:
        print(noise["warning"])
    out_dir = str(args.out or resultfiles.default_results_dir())
    exit_code = 0
    for every, one in documents:
        workload = every["config"]["workload"]
        for document, suffix in ((every, ""), (one, "-1thread")):
            document.update(load=load, noise=noise)
            print(document["verdict"]["line"])
            stem = resultfiles.results_stem(f"{workload}-cpu_bench{suffix}")
            print(f"results: {', '.join(resultfiles.write_results(out_dir, stem, document))}")
            exit_code = max(exit_code, document["exit_code"])
    return exit_code


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, exit_code = parse_or_exit(build_parser(), argv)
    return exit_code if args is None else run_tool(prog("bench"), lambda: run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
