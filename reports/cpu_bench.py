"""Benchmark numba_cpu against the NumPy reference, on every thread and on one: ``python -m reports.cpu_bench``.

    python -m reports.cpu_bench [--repeats 7] [--workloads seed light heavy] [--no-heavy-float32] [--out DIR]

For each workload (and ``heavy`` again in float32) it trains numpy, numba_cpu on every thread
Numba may use and numba_cpu on one thread, ``--repeats`` epochs each from the same initial
weights and minibatch order, measured as run_comparison.py measures (reports/measuring.py:
compile time apart, the median epoch, the phase breakdown), and checks both numba_cpu runs
against the reference. It prints one row per workload: speedup = T_numpy / T_numba and parallel
efficiency = T_1thread / (threads x T_numba), GFLOP/s against NumPy's matmul rate (the median
of 3 after a warm-up). Per workload it writes two results files of the harness's schema
(reports/resultfiles.py): ``<workload>-cpu_bench`` (numpy and numba_cpu on every thread) and
``<workload>-cpu_bench-1thread`` (config threads 1), which the report reads as it reads
``run_comparison.py --threads 1`` runs.

Exit status: 0; 1 when a numba_cpu run disagrees with the reference; 2 bad input; 3 training diverged.
"""
from __future__ import annotations

import sys

import numpy as np

from data.workloads import WORKLOADS, make_workload, with_config
from lstm_numpy.errors import NonFiniteLossError, UserError
from reports import resultfiles
from reports.census import REFERENCE, select_backends
from reports.console import Progress, fmt
from reports.machine import describe_machine
from reports.measuring import derived_rates, matmul_gflops, measure_backend, parallel_efficiency
from reports.options import OneSentenceParser, positive_int
from reports.verdict import compare_with_reference, verdict_line, verdict_record

BACKEND = "numba_cpu"
TOOL = "reports.cpu_bench"


def build_parser() -> OneSentenceParser:
    parser = OneSentenceParser(prog=f"python -m {TOOL}", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed epochs per backend (default: 7)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=["seed", "light", "heavy"],
                        help="workloads to time (default: seed light heavy)")
    parser.add_argument("--no-heavy-float32", action="store_true", help="skip heavy in float32 (default: run it)")
    parser.add_argument("--out", default=None,
                        help="folder for the JSON and CSV results (default: reports/results/ of this checkout)")
    return parser


def bench_document(results: dict, histories: dict, workload, dtype: str, names: list[str], census: dict,
                   matmul: dict, machine: dict, argv: list[str]) -> dict:
    """One results document for numpy and numba_cpu on ``workload`` (its config says the thread count)."""
    derived_rates(results, workload, matmul, dtype)
    mismatches = compare_with_reference(results, histories, dtype, "main")
    line = verdict_line(names, mismatches, dtype, workload.config.epochs, census)
    return resultfiles.results_document(
        argv=argv, exit_code=1 if mismatches else 0, verdict=verdict_record(line, names, mismatches, dtype),
        config=resultfiles.config_record(workload, names, dtype), machine=machine,
        reference_matmul=matmul, census=census, runs=[resultfiles.run_record("main", None, workload, results, {})],
        sweep=None, tool=TOOL)


def bench_workload(name: str, dtype: str, repeats: int, names: list[str], census: dict, matmul: dict,
                   machine: dict, progress: Progress, compiled: set, argv: list[str]) -> tuple[dict, dict]:
    """(every thread, one thread) results documents of one workload and dtype."""
    workload = make_workload(name, epochs=repeats)
    one_thread = with_config(workload, threads=1)
    params = workload.initial_params(dtype)
    results, histories = {}, {}
    for backend in names:
        results[backend], histories[backend] = measure_backend(census[backend], workload, params, progress,
                                                               compiled, breakdown=True)
    single, single_history = measure_backend(census[BACKEND], one_thread, params, progress, compiled, breakdown=True)
    every = bench_document(results, histories, workload, dtype, names, census, matmul, machine, argv)
    one = bench_document({REFERENCE: dict(results[REFERENCE]), BACKEND: single},
                         {REFERENCE: histories[REFERENCE], BACKEND: single_history},
                         one_thread, dtype, names, census, matmul, machine, argv)
    return every, one


def table_row(every: dict, one: dict) -> str:
    """workload, dtype, sizes, compile and epoch times (ms), speedup, parallel efficiency, GFLOP/s, % of A@B."""
    run, dtype = every["runs"][0], every["config"]["dtype"]
    numpy_result, numba_result = run["results"][REFERENCE], run["results"][BACKEND]
    t_one = one["runs"][0]["results"][BACKEND]["median_epoch_seconds"]
    t_numba, threads = numba_result["median_epoch_seconds"], numba_result["threads"]
    s = run["workload"]["shapes"]
    sizes = f"N={s['N_train']} T={s['T']} D={s['D']} H={s['H']} B={s['B']}"
    compile_ms = fmt(numba_result["compile_seconds"] and 1e3 * numba_result["compile_seconds"], "9.1f")
    return (f"{run['workload']['name']:9} {dtype:7} {sizes:34} {compile_ms:>9} "
            f"{1e3 * numpy_result['median_epoch_seconds']:9.2f} {1e3 * t_numba:9.2f} {1e3 * t_one:9.2f} "
            f"{numba_result['speedup']:7.1f}x {100 * parallel_efficiency(t_one, t_numba, threads):6.0f}% "
            f"{numba_result['gflops']:8.1f} {100 * numba_result['fraction_of_matmul']:5.0f}%")


def run(args, argv: list[str]) -> int:
    names, census = select_backends([BACKEND], use_simulator=False)
    machine = describe_machine()     # before the one-thread runs change Numba's thread count
    facts = census[BACKEND].describe
    print(f"machine: {machine['cpu_model']}, {machine['logical_cores']} cores; numba {facts.get('numba')} "
          f"({facts.get('threading_layer')} threading layer, {facts.get('threads')} threads), numpy {np.__version__}")
    matmul = matmul_gflops()
    print(f"NumPy {matmul['n']}x{matmul['n']} A@B (median of {matmul['repeats']} after a warm-up): float64 "
          f"{matmul['float64_gflops']:.1f} GFLOP/s, float32 {matmul['float32_gflops']:.1f} GFLOP/s")
    points = [(name, "float64") for name in args.workloads]
    if "heavy" in args.workloads and not args.no_heavy_float32:
        points.append(("heavy", "float32"))
    progress, documents = Progress(sys.stdout.isatty()), []
    compiled = {dtype: set() for _, dtype in points}      # each dtype compiles its own kernels
    for name, dtype in points:
        documents.append(bench_workload(name, dtype, args.repeats, names, census, matmul, machine, progress,
                                        compiled[dtype], argv))
    header = (f"{'workload':9} {'dtype':7} {'sizes':34} {'compile':>9} {'numpy':>9} {'numba':>9} {'numba 1T':>9} "
              f"{'speedup':>8} {'par.eff':>7} {'GFLOP/s':>8} {'% A@B':>6}")
    print(f"median of {args.repeats} epochs each; times in ms; compile = first minus second run on a tiny slice "
          f"(- : compiled for an earlier workload); par.eff = T_1thread / (threads x T_numba)")
    print(header)
    print("-" * len(header))
    for every, one in documents:
        print(table_row(every, one))
    out_dir = str(args.out or resultfiles.default_results_dir())
    exit_code = 0
    for every, one in documents:
        workload = every["config"]["workload"]
        for document, suffix in ((every, ""), (one, "-1thread")):
            print(document["verdict"]["line"])
            stem = resultfiles.results_stem(f"{workload}-cpu_bench{suffix}")
            print(f"results: {', '.join(resultfiles.write_results(out_dir, stem, document))}")
            exit_code = max(exit_code, document["exit_code"])
    return exit_code


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:          # --help (0) or a bad option (2, already explained on stderr)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return run(args, argv)
    except UserError as exc:
        print(f"{TOOL}: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"{TOOL}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
