"""Build the course report: figures (PNG and PDF), REPORT.md and a summary CSV from chosen results files.

    parallel-lstm report                                  # results in reports/results/, 10 forecast seeds
    parallel-lstm report --results FILE [FILE ...]        # exactly these results files
    parallel-lstm report --results DIR --out DIR --seeds 10 [--include-simulator] [--include-data]

Which files are used is decided by reports/selection.py (the newest complete real-hardware run of
each workload and dtype, and so on); REPORT.md lists them at the top with the reason each was
chosen, and every skipped file with one reason. ``<out>/results-summary.csv`` holds one row per run
and backend of the files used. Figures whose results are missing are left out and REPORT.md says
which command produces them. The same results files give the same bytes in every output file.
"""
from __future__ import annotations

import os
import sys

from parallel_lstm.lstm_numpy import UserError
from parallel_lstm.lstm_numpy.backends import BACKENDS, get_backend
from parallel_lstm.lstm_numpy.files import publish_file

from . import figures, tables, timing_figures
from .commands import prog
from .forecast import ENSEMBLE_SEEDS, forecast_section
from .options import OneSentenceParser, parse_or_exit, positive_int, run_tool
from .readings import busy_note, first_run, kernel_version, machine_line, reference_text, shapes_text, timed_results
from .selection import parallel_backends, results_paths, role_of, select
from .thread_scaling import from_pair, scaling_series
from .timing_figures import sweep_slopes

PROG = prog("report")
WORKLOAD_ORDER = ("seed", "light", "heavy", "gpu")
DTYPES = ("float64", "float32")
SUMMARY_CSV = "results-summary.csv"
# Names of the figures this build writes; a file of these names that the build did not write is stale.
GENERATED_FIGURES = ("passengers", "change", "losses-", "loss-difference-", "epoch-time", "speedup", "breakdown-",
                     "jit-payoff-", "sweep-", "scaling-", "strong-scaling-", "weak-scaling-", "cuda-versions",
                     "forecast")


def by_workload(chosen: dict, dtype: str) -> dict:
    """{workload: value} of a {(workload, dtype, ...): value} mapping for one dtype, workloads in report order."""
    found = {key[0]: value for key, value in chosen.items() if key[1] == dtype}
    return {w: found[w] for w in sorted(found, key=lambda w: (WORKLOAD_ORDER + (w,)).index(w))}


def dtypes_of(chosen: dict) -> list[str]:
    present = {key[1] for key in chosen}
    return [d for d in DTYPES if d in present] + sorted(present - set(DTYPES))


def figure_block(drawn: dict, name: str, alt: str) -> list[str]:
    """The image and the notes under it, or a line saying it is missing."""
    if name not in drawn:
        return [f"*(no {alt}: see below)*", ""]
    notes = drawn[name].notes
    return [f"![{alt}](figures/{name}.png)", ""] + ([f"*{' '.join(notes)}*", ""] if notes else [])


def own_efficiency(document: dict, selection) -> dict:
    """{backend: T_1 / (p T_p)} for the table of ``document``: only where the same backend's one-thread time is
    measured, by the pair this document is the many-thread side of, by its own thread-scaling entry, or (schema 2)
    by the one-thread trainers timed in its own rounds. Schema 1's field of that name was speedup / threads."""
    config = document["config"]
    key = (config["workload"], config["dtype"])
    series = []
    pair = selection.pairs.get(key)
    if pair and pair[0] is document:
        series = from_pair(*pair, backends=parallel_backends(*pair))
    elif isinstance(document.get("scaling"), dict):
        series = scaling_series(document)
    efficiency = {}
    for s in series:
        threads = timed_results(document).get(s.backend, {}).get("threads")
        if threads in s.threads and s.efficiency[s.threads.index(threads)] is not None:
            efficiency[s.backend] = s.efficiency[s.threads.index(threads)]
    if str(document.get("schema", "")).endswith("/2"):   # from 2 on, measured by one-thread trainers in the same rounds
        for name, result in timed_results(document).items():
            if result.get("parallel_efficiency") is not None:
                efficiency.setdefault(name, result["parallel_efficiency"])
    return efficiency


def performance_figures(folder, selection) -> dict:
    """Every figure of measured results: {name: figures.Drawn}."""
    drawn = []
    for dtype in dtypes_of(selection.main):
        mains = by_workload(selection.main, dtype)
        if dtype == "float64":
            for workload in ("seed", "light"):
                if workload in mains:
                    drawn.append(figures.loss_figure(folder, workload, first_run(mains[workload])["results"],
                                                     machine_line(mains[workload])))
        drawn.append(figures.loss_difference_figure(folder, dtype, {w: first_run(d)["results"]
                                                                    for w, d in mains.items()}))
        for draw in (timing_figures.epoch_time_figure, timing_figures.speedup_figure,
                     timing_figures.breakdown_figure, timing_figures.jit_payoff_figure):
            drawn.append(draw(folder, dtype, mains))
    for key, document in sorted(selection.sweeps.items()):
        drawn.append(timing_figures.sweep_figure(folder, document))
    drawn += [d for key, (series, documents, source) in sorted(thread_scaling_sources(selection).items())
              for d in timing_figures.thread_scaling_figure(folder, key[0], key[1], series, documents, source)]
    for dtype in dtypes_of(selection.cuda):
        versions = {(key[0], key[2]): doc for key, doc in selection.cuda.items() if key[1] == dtype}
        drawn.append(timing_figures.cuda_versions_figure(folder, dtype, versions))
    return {d.name: d for d in drawn if d is not None}


def thread_scaling_sources(selection) -> dict:
    """(workload, dtype) -> (series, {label: document}, where the data came from): a thread-scaling file first,
    else a one-thread pair."""
    sources = {}
    for key, document in selection.scaling.items():
        series = scaling_series(document)
        if series:
            kind = "its scaling entry" if document.get("scaling") else "its sweep of threads"
            sources[key] = (series, {"run": document}, f"`{document['_file']}` ({kind})")
    for key, (many, one) in selection.pairs.items():
        if key not in sources:
            series = from_pair(many, one, parallel_backends(many, one))
            if series:
                sources[key] = (series, {"one thread": one, "many threads": many},
                                f"`{one['_file']}` (1 thread) and `{many['_file']}`, same machine and day")
    return sources


def files_section(selection) -> list[str]:
    lines = ["## Results files", "",
             f"Chosen by `reports/selection.py`; one row per run and backend of these files is in `{SUMMARY_CSV}`",
             "beside this report. Used:", ""]
    lines += [f"- `{name}`: {'; '.join(why)}" for name, why in sorted(selection.used.items())] or ["- none", ""]
    if selection.skipped:
        lines += ["", "Skipped:", ""] + [f"- `{name}`: {why}" for name, why in sorted(selection.skipped.items())]
    return lines + [""]


def equivalence_section(selection, drawn: dict) -> list[str]:
    lines = ["## Do the backends compute the same thing?", ""]
    for dtype in dtypes_of(selection.main) or ["float64"]:
        mains = by_workload(selection.main, dtype)
        for workload, document in mains.items():
            lines += [f"**{workload}** ({dtype}): {document['verdict']['line']} (file `{document['_file']}`, "
                      f"machine: {machine_line(document)})", ""]
            if dtype == "float64" and workload in ("seed", "light"):
                lines += figure_block(drawn, f"losses-{workload}", f"{workload} loss curves")
        lines += ["Relative difference of every epoch's loss from the reference, against the rule "
                  f"({dtype}):", ""] + figure_block(drawn, f"loss-difference-{dtype}", f"{dtype} loss differences")
    for workload in ("seed", "light"):
        if workload not in by_workload(selection.main, "float64"):
            lines += [f"No `{workload}` results yet: run `parallel-lstm compare --workload {workload}`.", ""]
    return lines


ORIGINAL_CAVEAT = [
    "The methods differ, so the two tables are not comparable number for number. The original's model is a",
    "plain tanh RNN (four gate matrices are declared but the cell is not an LSTM), its backward pass has three",
    "bugs, its validation set also updates the weights, and its versions agree only after every operation is",
    "rounded to 10 digits; its timings wrap JIT compilation and host-device transfers into the wall time of a",
    "whole notebook cell. Here the model is a gated LSTM whose gradients pass finite-difference checks, every",
    "backend matches the reference to 1e-10 in float64 without rounding, compilation is timed apart and",
    "never inside an epoch, and each time is the median of repeated epochs with the GPU synchronised.", ""]


def time_section(selection, drawn: dict) -> list[str]:
    lines = ["## Time", "",
             "**Speedup** is T_numpy / T_backend on the same workload and machine: how many times faster than the",
             "NumPy reference (whose BLAS may itself use several threads; each table says how many where the file",
             "records it). **Parallel efficiency** is T_1 / (p T_p) of the SAME backend on 1 and p threads, shown only",
             "where that backend's one-thread time was measured (next section). JIT compile is the first minus the",
             "second run on a tiny slice; with Numba's on-disk cache warm (`cache=True`) it is the time to load",
             "compiled code, while a first run on a fresh machine compiles for about 30 s per dtype. GFLOP/s count",
             "3 x 2*T*B*4H*(D+H) per training step plus the head (`lstm_numpy.flops.training_flops`). "
             f"{tables.NOISY_MARK} marks a time the measurement called noisy.", ""]
    seed = selection.main.get(("seed", "float64"))
    if seed and timed_results(seed):
        lines += ["Our backends on `seed` in the original's format (training epochs only; JIT compilation measured",
                  f"apart; the original called the speedup \"efficiency\"). Machine: {machine_line(seed)}; shapes "
                  f"{shapes_text(seed)}, dtype float64; {reference_text(seed)}.", "",
                  tables.original_format_table(seed), ""]
    lines += ["The original project's published table (AirPassengers, 6 epochs, `%%time` around the whole call on a",
              "Colab GPU; quoted, not measured here):", "",
              tables.markdown_table(["implementation", "wall", "efficiency vs sequential"],
                                    [list(r) for r in tables.ORIGINAL_TIMINGS]), ""] + ORIGINAL_CAVEAT
    for dtype in dtypes_of(selection.main):
        for workload, doc in by_workload(selection.main, dtype).items():
            if not timed_results(doc):
                continue
            matmul = doc.get("reference_matmul") or {}
            rate = (f"NumPy 2048x2048 matmul: {matmul['float64_gflops']:.1f} GFLOP/s float64, "
                    f"{matmul['float32_gflops']:.1f} float32, the {dtype} rate is the denominator; "
                    if matmul.get("float64_gflops") and matmul.get("float32_gflops") else "")
            busy = f" **Warning: {busy_note(doc)}.**" if busy_note(doc) else ""
            lines += [f"**{workload}** ({shapes_text(doc)}, {dtype}; {rate}{reference_text(doc)}; machine: "
                      f"{machine_line(doc)}; file `{doc['_file']}`){busy}", "",
                      tables.detail_table(doc, own_efficiency(doc, selection)), ""]
        for name, alt in (("epoch-time", "epoch times"), ("speedup", "speedup bars"),
                          ("breakdown", "phase breakdown"), ("jit-payoff", "JIT payoff")):
            lines += figure_block(drawn, f"{name}-{dtype}", f"{dtype} {alt}")
    return lines


def threads_section(selection, drawn: dict) -> list[str]:
    lines = ["## Scaling with threads", ""]
    sources = thread_scaling_sources(selection)
    for (workload, dtype), (series, _, source) in sorted(sources.items()):
        for s in series:
            points = ", ".join(f"{p} thread{'s' if p > 1 else ''} {figures.short_seconds(t)}"
                               + (f" ({100 * e:.0f}%)" if p > 1 and e else "")
                               for p, t, e in zip(s.threads, s.median, s.efficiency))
            fraction = (f"; Amdahl serial fraction {s.serial_fraction:.3f}"
                        if s.mode == "strong" and s.serial_fraction is not None else "")
            lines += [f"**{workload}** {dtype}, {s.backend} ({s.mode} scaling; parallel efficiency in brackets): "
                      f"{points}{fraction}. Data: {source}.", ""]
        for mode in ("strong", "weak"):
            if f"{mode}-scaling-{workload}-{dtype}" in drawn:
                lines += figure_block(drawn, f"{mode}-scaling-{workload}-{dtype}", f"{mode} scaling")
    if not sources:
        lines += ["No one-thread run of the same machine and day as a many-thread run, so parallel efficiency is",
                  "not shown: run `parallel-lstm bench` (it writes both), or `parallel-lstm compare",
                  "--workload heavy --threads 1` on the same day as the many-thread run.", ""]
    return lines


SLOPE_MEANING = {
    "hidden": "each step's gate products cost 2*4H*(D+H) operations (backward twice that), so the work grows "
              "about as H^2 (slope 2 for H much larger than D), not as H",
    "samples": "the work of an epoch is proportional to the number of training windows (slope 1)",
    "seq_len": "the work is proportional to T (slope 1), and the time loop is serial in every backend",
    "batch_size": "the work of an epoch does not depend on B (slope 0): B only sets how many sequences share one "
                  "matrix product, so a negative time slope means larger batches use the hardware better",
}


def slope_reading(fitted: float, expected: float) -> str:
    if abs(fitted - expected) < 0.15:
        return "follows the work"
    if fitted < expected:
        return "grows slower than the work (fixed per-step costs, not the products, dominate the smaller sizes)"
    return "grows faster than the work (the larger sizes run less efficiently: caches, memory bandwidth)"


def sweeps_section(selection, drawn: dict) -> list[str]:
    lines = ["## Scaling with problem size", ""]
    for (workload, dtype, param), document in sorted(selection.sweeps.items()):
        fitted, expected = sweep_slopes(document)
        values = (document.get("sweep") or {}).get("values")
        text = f"Sweep of {param} on `{workload}` {dtype} ({values}, file `{document['_file']}`)"
        if expected is not None:
            text += (f": the work model (`lstm_numpy.flops.epoch_flops`) grows with log-log slope {expected:.2f} over "
                     f"these sizes; {SLOPE_MEANING.get(param, 'see lstm_numpy/flops.py')}. Fitted time slopes: ")
            text += "; ".join(f"{b} {s:.2f}, which {slope_reading(s, expected)}" for b, s in fitted.items()
                              if s is not None) + "."
        lines += [text, ""] + figure_block(drawn, f"sweep-{workload}-{dtype}-{param}", f"{param} sweep")
    if not selection.sweeps:
        lines += ["No sweep results yet: run e.g. `parallel-lstm compare --workload heavy --sweep "
                  "samples=512,1024,2048`.", ""]
    return lines


def cuda_section(selection, drawn: dict) -> list[str]:
    lines = ["## CUDA kernel versions", ""]
    names = [f"cuda-versions-{dtype}" for dtype in dtypes_of(selection.cuda) if f"cuda-versions-{dtype}" in drawn]
    for name in names:
        lines += figure_block(drawn, name, "CUDA kernel versions")
    if not names:
        lines += ["No real-GPU results yet, so the CUDA kernel versions are not compared here; on a GPU machine run",
                  "`parallel-lstm gpu-check --out reports/results` and `parallel-lstm compare --workload gpu`.",
                  ""]
    return lines


def report_markdown(selection, drawn: dict, forecast_lines: list[str]) -> str:
    lines = ["# parallel-lstm: course report", "",
             "Generated by `parallel-lstm report` from the results files listed below and a fresh forecast run; do not",
             "edit by hand. Every figure exists as PNG and PDF in `figures/`.", ""]
    lines += files_section(selection)
    lines += ["## Data (the original project's four figures)", ""]
    lines += [f"![{alt}](figures/{name}.png)" for name, alt in (("passengers", "passengers"), ("change", "change"),
                                                                ("change-normalized", "normalised change"),
                                                                ("change-encoded", "encoded change"))] + [""]
    for section in (equivalence_section, time_section, threads_section, sweeps_section, cuda_section):
        lines += section(selection, drawn)
    return "\n".join(lines + forecast_lines)


def write_text(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (generated files: replacing the previous build is intended)."""
    publish_file(path, text, overwrite=True, what="report file")


def remove_stale_figures(folder: str, drawn: dict) -> None:
    """Delete figures an earlier build wrote that this one did not (their results are no longer chosen), so
    that the folder holds exactly the report's figures; files of other names are left alone."""
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if ext in (".png", ".pdf") and stem not in drawn and stem.startswith(GENERATED_FIGURES):
            os.remove(os.path.join(folder, name))


def build_report(out_dir, results=None, seeds: int = ENSEMBLE_SEEDS, forecast_backend: str = "numpy",
                 forecast_overrides: dict | None = None, include_simulator: bool = False,
                 include_data: bool = False, say=None) -> str:
    """Write figures into out_dir/figures, REPORT.md and results-summary.csv into out_dir; return REPORT.md's path.

    results: a folder or a results file, or a list of them (default: reports/results); say: called with one
    line per results file that could not be read as a JSON object (REPORT.md lists it too).
    """
    paths = [os.path.join("reports", "results")] if results is None else \
        [str(results)] if isinstance(results, (str, os.PathLike)) else [str(p) for p in results]
    selection = select(paths, include_simulator, include_data)
    for name in selection.damaged if say else ():
        say(f"skipped {name}: {selection.skipped[name]}")
    out_dir = str(out_dir)
    folder = os.path.join(out_dir, "figures")
    drawn = {d.name: d for d in figures.data_figures(folder)}
    drawn.update(performance_figures(folder, selection))
    forecast_lines, forecast_drawn = forecast_section(folder, seeds, forecast_backend, forecast_overrides)
    drawn.update({d.name: d for d in forecast_drawn})
    remove_stale_figures(folder, drawn)
    write_text(os.path.join(out_dir, SUMMARY_CSV), tables.summary_csv(selection.documents()))
    path = os.path.join(out_dir, "REPORT.md")
    write_text(path, report_markdown(selection, drawn, forecast_lines))
    return path


def read_documents(results_dir) -> list[dict]:
    """The documents of a folder the report would use (simulator and --data runs included), oldest first."""
    return select([str(results_dir)], include_simulator=True, include_data=True).documents()


def latest_by_workload(documents: list[dict], dtype: str = "float64") -> dict[str, dict]:
    """The newest run of each workload in ``dtype`` that is not a sweep, a one-thread run or a gpu_check file."""
    return {d["config"]["workload"]: d for d in documents if d["config"]["dtype"] == dtype and role_of(d) == "main"}


def cuda_versions_figure(folder, documents: list[dict]) -> list[str]:
    """The CUDA kernel versions figures of ``documents`` (newest per workload, dtype and version); their paths."""
    written = []
    for dtype in sorted({d["config"]["dtype"] for d in documents}):
        versions = {(d["config"]["workload"], kernel_version(d)): d for d in documents
                    if d["config"]["dtype"] == dtype and "numba_cuda" in timed_results(d)}
        drawn = timing_figures.cuda_versions_figure(folder, dtype, versions)
        written += drawn.paths if drawn else []
    return written


def build_parser() -> OneSentenceParser:
    parser = OneSentenceParser(prog=PROG, description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--results", nargs="+", default=[os.path.join("reports", "results")], metavar="PATH",
        help="results folders and/or results files chosen by hand (default: reports/results)")
    add("--out", default="reports", help="folder for REPORT.md, results-summary.csv and figures/ (default: reports)")
    add("--seeds", type=positive_int, default=ENSEMBLE_SEEDS,
        help=f"forecast runs, seeds 0..N-1 (default: {ENSEMBLE_SEEDS})")
    add("--forecast-backend", default="numpy", choices=list(BACKENDS),
        help="backend that trains the forecasts (default: numpy)")
    add("--include-simulator", action="store_true", help="also use runs made on Numba's CUDA simulator")
    add("--include-data", action="store_true", help="also use runs trained on --data FILE instead of AirPassengers")
    return parser


def check_options(args) -> None:
    """Every option checked before any work is done or any file written; UserError names the first problem."""
    results_paths(args.results)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a file; give a folder for the report.")
    reason = get_backend(args.forecast_backend).is_available()
    if reason:
        raise UserError(f"--forecast-backend {args.forecast_backend} cannot run here: {reason}")


def main(argv=None) -> int:
    args, exit_code = parse_or_exit(build_parser(), sys.argv[1:] if argv is None else list(argv))
    if args is None:
        return exit_code

    def work():
        check_options(args)
        os.makedirs(args.out, exist_ok=True)
        path = build_report(args.out, args.results, args.seeds, args.forecast_backend,
                            include_simulator=args.include_simulator, include_data=args.include_data,
                            say=lambda line: print(f"{PROG}: {line}", file=sys.stderr))
        print(f"wrote {path}")
        return 0
    return run_tool(PROG, work, "interrupted ({reason}); REPORT.md is written whole or not at all")
