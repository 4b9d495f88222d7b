"""Build the course report: figures (PNG and PDF) and REPORT.md from results files and a forecast run.

    python -m reports                          # latest results in reports/results/, 5 forecast seeds
    python -m reports --results DIR --out DIR --seeds 5

Reads the newest ``run_comparison.py`` JSON file of each workload (and every sweep file),
so a report is rebuilt from files, never from numbers typed by hand. Figures whose
results are missing are left out and REPORT.md says which command produces them.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile

import numpy as np

from data import airpassengers, airpassengers_months
from lstm_numpy import UserError

from . import figures, tables
from .measuring import parallel_efficiency
from .forecast import AIRLINE_MODEL, baseline_metrics, forecast_run, median_metrics, persistence, seasonal_naive

WORKLOAD_ORDER = ("seed", "light", "heavy", "gpu")


def read_documents(results_dir) -> list[dict]:
    """Every results JSON file in ``results_dir``, oldest first (file names start with the date)."""
    documents = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        # a file without runs (gpu_check after a failed validation) has nothing to plot
        if str(document.get("schema", "")).startswith("parallel-lstm/run_comparison/") and document.get("runs"):
            document["_file"] = os.path.basename(path)
            documents.append(document)
    return documents


def latest_by_workload(documents: list[dict], dtype: str = "float64") -> dict[str, dict]:
    """The newest run of each workload in ``dtype``, leaving out sweeps and single-thread runs."""
    latest = {}
    for document in documents:
        config = document["config"]
        if document.get("sweep") is None and config["dtype"] == dtype and config.get("threads") != 1:
            latest[config["workload"]] = document
    return latest


def thread_efficiency(documents: list[dict], document: dict, backend: str = "numba_cpu") -> str | None:
    """T(1 thread) / (threads * T(threads)) for a CPU backend, from the newest --threads 1 run of the same
    workload and dtype, as a sentence; None when there is no such run."""
    config = document["config"]
    result = timed_results(document).get(backend)
    single = [d for d in documents if d.get("sweep") is None and d["config"].get("threads") == 1
              and (d["config"]["workload"], d["config"]["dtype"]) == (config["workload"], config["dtype"])
              and backend in timed_results(d)]
    if not result or not single or not result.get("threads") or result["threads"] < 2:
        return None
    t1 = timed_results(single[-1])[backend]["median_epoch_seconds"]
    tn, n = result["median_epoch_seconds"], result["threads"]
    return (f"{backend} on {n} threads against 1 thread (file `{single[-1]['_file']}`): "
            f"{tables.seconds(t1)} / ({n} x {tables.seconds(tn)}) = {100 * parallel_efficiency(t1, tn, n):.0f}% "
            f"parallel efficiency.")


def machine_line(document: dict) -> str:
    m = document["machine"]
    gpu = m.get("cuda_device") or {}
    gpu_text = f", GPU {gpu['device']} (cc {gpu['compute_capability']})" if gpu and not gpu.get("simulator") else ""
    layer = m["numba"].get("threading_layer")
    return (f"{m.get('cpu_model', '?')}, {m.get('usable_cores', '?')} usable cores, "
            f"{m['numba'].get('num_threads', '?')} Numba threads{f' ({layer} layer)' if layer else ''}{gpu_text}")


def shapes_text(document: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in document["runs"][0]["workload"]["shapes"].items())


def timed_results(document: dict) -> dict[str, dict]:
    return {name: r for name, r in document["runs"][0]["results"].items() if r.get("timed")}


def timing_figures(folder, latest: dict[str, dict]) -> list[str]:
    """Median epoch time per backend and workload (log scale) and the speedup over NumPy."""
    import matplotlib.pyplot as plt
    workloads = [w for w in WORKLOAD_ORDER if w in latest and timed_results(latest[w])]
    if not workloads:
        return []
    backends = sorted({b for w in workloads for b in timed_results(latest[w])}, key=list(figures.BACKEND_STYLES).index)
    width = 0.8 / len(backends)
    written = []
    for name, key, ylabel, log in (("epoch-time", "median_epoch_seconds", "median epoch wall time (s)", True),
                                   ("speedup", "speedup", "speedup over NumPy (x)", False)):
        fig, ax = plt.subplots(figsize=(9, 4.2))
        for k, backend in enumerate(backends):
            values = [timed_results(latest[w]).get(backend, {}).get(key) or np.nan for w in workloads]
            bars = ax.bar(np.arange(len(workloads)) + (k - (len(backends) - 1) / 2) * width, values, width,
                          label=backend, color=figures.BACKEND_STYLES[backend]["color"])
            ax.bar_label(bars, labels=[("" if np.isnan(v) else f"{v:.3g}") for v in values], fontsize=7)
        ax.set_xticks(np.arange(len(workloads)), workloads)
        if log:
            ax.set_yscale("log")
        ax.set(title=f"{'Time per training epoch' if log else 'Speedup over the NumPy reference'} by workload",
               xlabel="workload", ylabel=ylabel)
        figures.outside_legend(ax)
        fig.text(0.01, 0.01, "machine: " + machine_line(latest[workloads[0]]), fontsize=7)
        written += figures.save(fig, folder, name)
    return written


def scaling_figures(folder, documents: list[dict]) -> tuple[list[str], list[dict]]:
    """One log-log figure per sweep file: time per epoch against size, with fitted slopes."""
    import matplotlib.pyplot as plt
    written, sweeps = [], []
    for document in documents:
        sweep = document.get("sweep")
        if not sweep:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.2))
        for backend, times in sweep["median_epoch_seconds"].items():
            points = [(v, t) for v, t in zip(sweep["values"], times) if t]
            if not points:
                continue
            slope = sweep["slopes"].get(backend)
            label = f"{backend} (slope {slope:.2f})" if slope is not None else backend
            style = {**figures.BACKEND_STYLES[backend], "linewidth": 2, "marker": "o"}
            ax.plot(*zip(*points), label=label, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        workload = document["config"]["workload"]
        ax.set(title=f"Scaling on {workload}: time per epoch against {sweep['param']}",
               xlabel=f"{sweep['param']} (log scale)", ylabel="median epoch wall time (s, log scale)")
        figures.outside_legend(ax)
        name = f"scaling-{workload}-{sweep['param']}"
        written += figures.save(fig, folder, name)
        sweeps.append({"name": name, "document": document})
    return written, sweeps


def cuda_versions_figure(folder, documents: list[dict]) -> list[str]:
    """Median epoch time of each CUDA kernel version per workload, from real-GPU runs only."""
    import matplotlib.pyplot as plt
    times = {}
    for document in documents:
        result = timed_results(document).get("numba_cuda") if document.get("sweep") is None else None
        if result and not result.get("simulator"):
            version = result["stats"].get("kernel_version")
            times[(document["config"]["workload"], version)] = result["median_epoch_seconds"]
    if not times:
        return []
    fig, ax = plt.subplots(figsize=(8, 4))
    for workload in WORKLOAD_ORDER:
        points = sorted((v, t) for (w, v), t in times.items() if w == workload)
        if points:
            ax.plot(*zip(*points), marker="o", label=workload)
    ax.set_yscale("log")
    ax.set(title="CUDA kernel versions compared", xlabel="kernel version", ylabel="median epoch wall time (s)")
    figures.outside_legend(ax)
    return figures.save(fig, folder, "cuda-versions")


def results_table(document: dict) -> str:
    """The original's format: implementation, CPU user, CPU sys, wall, efficiency (here for the epochs run)."""
    rows = []
    epochs = document["runs"][0]["workload"]["epochs"]
    for name, r in document["runs"][0]["results"].items():
        if not r.get("timed"):
            rows.append([name, "simulator: not timed", "", "", "", ""])
            continue
        rows.append([name, tables.seconds(r["user_seconds_per_epoch"] * epochs),
                     tables.seconds(r["sys_seconds_per_epoch"] * epochs), tables.seconds(sum(r["epoch_seconds"])),
                     tables.seconds(r["compile_seconds"]), f"{100 * r['speedup']:.0f}%"])
    return tables.markdown_table(["implementation", "CPU user", "CPU sys", f"wall ({epochs} epochs)",
                                  "JIT compile (apart)", "efficiency"], rows)


def detail_table(document: dict) -> str:
    rows = []
    for name, r in timed_results(document).items():
        b = r.get("breakdown") or {}
        rows.append([name, tables.seconds(r["median_epoch_seconds"]), f"{r['speedup']:.2f}x",
                     "" if r.get("parallel_efficiency") is None else f"{100 * r['parallel_efficiency']:.0f}%",
                     f"{r['samples_per_second']:.4g}", f"{r['gflops']:.3g}", f"{100 * r['fraction_of_matmul']:.1f}%",
                     " / ".join(tables.seconds(b.get(k)) for k in ("forward_seconds", "backward_seconds", "update_seconds"))
                     if b else "n/a"])
    return tables.markdown_table(["backend", "median epoch", "speedup", "efficiency/thread", "samples/s", "GFLOP/s",
                                  "of NumPy matmul rate", "forward / backward / update"], rows)


def build_report(out_dir, results_dir, seeds: int = 5, forecast_backend: str = "numpy",
                 forecast_overrides: dict | None = None) -> str:
    """Write figures into out_dir/figures and REPORT.md into out_dir; return REPORT.md's path."""
    documents = read_documents(results_dir)
    latest = latest_by_workload(documents)
    folder = os.path.join(out_dir, "figures")
    written = figures.data_figures(folder)
    for workload in ("seed", "light"):
        if workload in latest:
            losses = latest[workload]["runs"][0]["results"]
            written += figures.loss_figure(folder, workload, losses, machine_line(latest[workload]))
    written += timing_figures(folder, latest)
    scaling, sweeps = scaling_figures(folder, documents)
    written += scaling + cuda_versions_figure(folder, documents)

    series = airpassengers()
    runs = [forecast_run(seed, forecast_backend, **(forecast_overrides or {})) for seed in range(seeds)]
    written += figures.forecast_figure(folder, series, airpassengers_months(), runs,
                                       {"persistence": persistence(series), "seasonal naive": seasonal_naive(series)})
    text = report_markdown(documents, latest, sweeps, runs, forecast_backend, forecast_overrides, written)
    path = os.path.join(out_dir, "REPORT.md")
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".md")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)   # REPORT.md is generated: replacing the previous one is intended
    return path


def report_markdown(documents, latest, sweeps, runs, forecast_backend, overrides, written) -> str:
    have = {os.path.splitext(os.path.basename(p))[0] for p in written}
    image = lambda name, alt: f"![{alt}](figures/{name}.png)" if name in have else f"*(no {alt}: see below)*"  # noqa: E731
    lines = ["# parallel-lstm: course report", "",
             "Generated by `python -m reports` from the newest results files in `reports/results/` and a fresh",
             "forecast run; do not edit by hand. Every figure exists as PNG and PDF in `reports/figures/`.", "",
             "## Data (the original project's four figures)", "",
             image("passengers", "passengers"), image("change", "change"), image("change-normalized", "normalised change"),
             image("change-encoded", "encoded change"), "",
             "## Do the backends compute the same thing?", ""]
    for workload in ("seed", "light"):
        if workload in latest:
            doc = latest[workload]
            lines += [f"**{workload}**: {doc['verdict']['line']} (file `{doc['_file']}`, machine: {machine_line(doc)})", "",
                      image(f"losses-{workload}", f"{workload} loss curves"), ""]
        else:
            lines += [f"No `{workload}` results yet: run `python run_comparison.py --workload {workload}`.", ""]
    lines += ["## Time", ""]
    if "seed" in latest:
        doc = latest["seed"]
        lines += ["Our backends on `seed` in the original's format (training epochs only; JIT compilation measured",
                  f"apart; efficiency = T_numpy / T_backend). Machine: {machine_line(doc)}; shapes "
                  f"{shapes_text(doc)}, dtype {doc['config']['dtype']}.", "",
                  results_table(doc), ""]
    lines += ["The original project's published table (AirPassengers, 6 epochs, `%%time` around the whole call on a",
              "Colab GPU; quoted, not measured here):", "",
              tables.markdown_table(["implementation", "wall", "efficiency vs sequential"],
                                    [list(r) for r in tables.ORIGINAL_TIMINGS]), "",
              "The methods differ, so the two tables are not comparable number for number. The original's model is a",
              "plain tanh RNN (four gate matrices are declared but the cell is not an LSTM), its backward pass has three",
              "bugs, its validation set also updates the weights, and its versions agree only after every operation is",
              "rounded to 10 digits; its timings wrap JIT compilation and host-device transfers into the wall time of a",
              "whole notebook cell. Here the model is a gated LSTM whose gradients pass finite-difference checks, every",
              "backend matches the reference to 1e-10 in float64 without rounding, compilation is timed apart and",
              "never inside an epoch, and each figure is the median of repeated epochs with the GPU synchronised.", ""]
    lines += ["JIT compile is the first minus the second run on a tiny slice; with Numba's on-disk cache warm",
              "(`cache=True`) it is the time to load compiled code, while a first run on a fresh machine compiles",
              "for about 30 s per dtype. \"efficiency/thread\" is speedup / threads; the",
              "1-thread against 2-thread efficiency follows a table where a `--threads 1` run exists. GFLOP/s count",
              "3 x 2*T*B*4H*(D+H) per training step plus the head (`lstm_numpy.flops.training_flops`).", ""]
    for dtype in ("float64", "float32"):
        by_workload = latest if dtype == "float64" else latest_by_workload(documents, dtype)
        for workload in WORKLOAD_ORDER:
            if workload in by_workload and timed_results(by_workload[workload]):
                doc = by_workload[workload]
                lines += [f"**{workload}** ({shapes_text(doc)}, {dtype}; "
                          f"NumPy 2048x2048 matmul: {doc['reference_matmul']['float64_gflops']:.1f} GFLOP/s float64, "
                          f"{doc['reference_matmul']['float32_gflops']:.1f} float32, the {dtype} rate is the "
                          f"denominator; machine: {machine_line(doc)}; file `{doc['_file']}`)", "",
                          detail_table(doc), ""]
                efficiency = thread_efficiency(documents, doc)
                if efficiency:
                    lines += [efficiency, ""]
    lines += [image("epoch-time", "epoch times"), image("speedup", "speedup bars"), ""]
    for sweep in sweeps:
        s = sweep["document"]["sweep"]
        slopes = ", ".join(f"{b} {v:.2f}" for b, v in s["slopes"].items() if v is not None)
        lines += [f"Scaling with {s['param']} on {sweep['document']['config']['workload']} ({s['values']}): "
                  f"log-log slopes {slopes} (1.0 = time grows in proportion to the work). "
                  f"Machine: {machine_line(sweep['document'])}.", "", image(sweep["name"], "scaling curve"), ""]
    if not sweeps:
        lines += ["No sweep results yet: run e.g. `python run_comparison.py --workload heavy --sweep samples=512,1024,2048`.", ""]
    if "cuda-versions" in have:
        lines += [image("cuda-versions", "CUDA kernel versions"), ""]
    else:
        lines += ["No real-GPU results yet, so the CUDA kernel versions are not compared here; on a GPU machine run",
                  "`python -m reports.gpu_check --out reports/results` and "
                  "`python run_comparison.py --workload gpu`.", ""]
    series = airpassengers()
    lines += ["## Forecast of the 24 held-out months (1959-1960)", "",
              f"The `light` workload with its default training configuration ({forecast_backend} backend"
              f"{', overrides ' + str(overrides) if overrides else ''}), trained on the months before 1958-01 and",
              "validated on 1958. Its settings were chosen by a backtest inside the months before 1959 (`python -m",
              "reports.backtest`: the same pipeline on months 1949-1958, scored on its own last 24 months); the test",
              "months took no part in training or in choosing settings. Forecasts are in thousands of passengers",
              "after undoing every transform.", "",
              tables.forecast_table(median_metrics(runs), baseline_metrics(series), AIRLINE_MODEL, len(runs)), "",
              "Each seed:", "", tables.seeds_table(runs), "", image("forecast", "forecast figure"), "",
              "MASE divides by the in-sample seasonal-naive mean absolute error (months 1950-01..1958-12).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join("reports", "results"),
                        help="folder of run_comparison.py results files (default: %(default)s)")
    parser.add_argument("--out", default="reports", help="folder for REPORT.md and figures/ (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="forecast runs, seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--forecast-backend", default="numpy", help="backend that trains the forecasts (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.seeds <= 0:
            raise UserError(f"--seeds must be a positive integer, got {args.seeds}.")
        if not os.path.isdir(args.results):
            raise UserError(f"results folder {args.results} does not exist; run python run_comparison.py first.")
        os.makedirs(args.out, exist_ok=True)
        path = build_report(args.out, args.results, args.seeds, args.forecast_backend)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
