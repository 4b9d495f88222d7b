"""Tables of the report: the Markdown tables of REPORT.md and the one-row-per-run summary CSV."""
from __future__ import annotations

from .readings import busy_note, commit, first_run, noise_reasons, spread, timed_results
from .resultfiles import csv_text

# The original course project's README table (AirPassengers, 6 epochs, %%time around the whole
# call on a Colab GPU, JIT compilation and transfers included). Quoted facts, not our measurements.
ORIGINAL_TIMINGS = [
    ("Sequential (pure Python loops)", "5 min 02 s", "100%"),
    ("NumPy", "2 min 07 s", "238%"),
    ("Numba-CUDA V1 (kernel copy of the sequential code, one block)", "1 min 20 s", "378%"),
    ("Numba-CUDA V2 (one thread per sample)", "18.7 s", "1615%"),
    ("Numba-CUDA V3 (read-only arrays kept on the device)", "17.2 s", "1703%"),
]


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(value: float | None) -> str:
    """A duration the way the original's table writes it, with enough digits for short times."""
    if value is None:
        return "n/a"
    if value >= 60:
        return f"{int(value // 60)} min {value % 60:04.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} µs"


def percent(value: float) -> str:
    """A percentage with one decimal; n/a where it is undefined (NaN)."""
    return "n/a" if value != value else f"{value:.1f}%"


def forecast_table(by_method: dict[str, dict]) -> str:
    """One row per horizon and method ({method: {horizon: metrics}}, in the given order): RMSE, MAE, MAPE, MASE."""
    rows = [[name, horizon, f"{m[horizon]['RMSE']:.1f}", f"{m[horizon]['MAE']:.1f}", percent(m[horizon]["MAPE"]),
             f"{m[horizon]['MASE']:.2f}"]
            for horizon in ("one-step", "24-step") for name, m in by_method.items()]
    return markdown_table(["method", "horizon", "RMSE", "MAE", "MAPE", "MASE"], rows)


def seeds_table(runs) -> str:
    """One row per forecast run: epochs kept, RMSE and MAPE of both horizons, final losses."""
    rows = [[r.seed, f"{r.metrics['one-step']['RMSE']:.2f}", percent(r.metrics["one-step"]["MAPE"]),
             f"{r.metrics['24-step']['RMSE']:.2f}", percent(r.metrics["24-step"]["MAPE"]), len(r.train_loss),
             f"{r.train_loss[-1]:.4f}", f"{r.valid_loss[-1]:.4f}"] for r in runs]
    return markdown_table(["seed", "one-step RMSE", "one-step MAPE", "24-step RMSE", "24-step MAPE", "epochs kept",
                           "final train loss", "final valid loss"], rows)


NOISY_MARK = "†"
SUMMARY_COLUMNS = ("run_id", "file", "commit", "created", "tool", "workload", "dtype", "sweep_param", "sweep_value",
                   "backend", "threads", "median_epoch_seconds", "min_seconds", "q1_seconds", "q3_seconds",
                   "max_seconds", "repeats", "spread_from", "speedup", "noisy", "busy_machine")


def spread_text(result: dict) -> str:
    """'q1..q3' of the epoch time for a table cell, or '' where there is no spread."""
    quartiles, _ = spread(result)
    return f"{seconds(quartiles['q1'])}..{seconds(quartiles['q3'])}" if quartiles else ""


def time_cell(result: dict) -> str:
    """The median epoch, marked when the measurement called it noisy."""
    return seconds(result["median_epoch_seconds"]) + (f" {NOISY_MARK}" if noise_reasons(result) is not None else "")


def original_format_table(document: dict) -> str:
    """The original project's format: implementation, CPU user, CPU sys, wall, JIT compile, speedup over NumPy."""
    run = first_run(document)
    epochs = run["workload"]["epochs"]
    timed = timed_results(document)
    rows = []
    for name, r in run["results"].items():
        if name not in timed:
            rows.append([name, "not timed (simulator)", "", "", "", ""])
            continue
        speedup = r.get("speedup")
        mark = f" {NOISY_MARK}" if noise_reasons(r) is not None else ""
        rows.append([name, seconds(r.get("user_seconds_per_epoch") and r["user_seconds_per_epoch"] * epochs),
                     seconds(r.get("sys_seconds_per_epoch") and r["sys_seconds_per_epoch"] * epochs),
                     seconds(sum(r.get("epoch_seconds") or [])) + mark,
                     seconds(r.get("compile_seconds")), "n/a" if speedup is None else f"{speedup:.2f}x"])
    return markdown_table(["implementation", "CPU user", "CPU sys", f"wall ({epochs} epochs)", "JIT compile (apart)",
                           "speedup over NumPy"], rows)


def detail_table(document: dict, efficiency: dict) -> str:
    """One row per timed backend; the parallel efficiency column only where some backend has one.

    efficiency: {backend: T_1 / (p T_p) of that backend} where its one-thread time was measured.
    """
    with_efficiency = bool(efficiency)
    rows = []
    for name, r in timed_results(document).items():
        b = r.get("breakdown") or {}
        cells = [name, time_cell(r), spread_text(r) or "no spread recorded",
                 "n/a" if r.get("speedup") is None else f"{r['speedup']:.2f}x"]
        if with_efficiency:
            cells.append(f"{100 * efficiency[name]:.0f}%" if name in efficiency else "not measured")
        cells += ["n/a" if r.get("samples_per_second") is None else f"{r['samples_per_second']:.4g}",
                  "n/a" if r.get("gflops") is None else f"{r['gflops']:.3g}",
                  "n/a" if r.get("fraction_of_matmul") is None else f"{100 * r['fraction_of_matmul']:.1f}%",
                  " / ".join(seconds(b.get(k)) if b.get(k) is not None else "within noise"
                             for k in ("forward_seconds", "backward_seconds", "update_seconds")) if b else "n/a"]
        rows.append(cells)
    header = ["backend", "median epoch", "quartiles", "speedup over NumPy"]
    header += ["parallel efficiency"] if with_efficiency else []
    header += ["samples/s", "GFLOP/s", "of NumPy matmul rate", "forward / backward / update"]
    return markdown_table(header, rows)


def summary_rows(documents: list[dict]) -> list[dict]:
    """One row per run and backend of the documents the report used (runs of a sweep each get a row)."""
    rows = []
    for document in documents:
        stem = document["_file"].rsplit(".json", 1)[0]
        sweep_param = (document.get("sweep") or {}).get("param")
        for run in document["runs"]:
            run_id = stem if len(document["runs"]) == 1 else f"{stem}/{run.get('label')}"
            for backend, result in timed_results(document, run).items():
                quartiles, source = spread(result)
                rows.append({"run_id": run_id, "file": document["_file"], "commit": commit(document),
                             "created": document.get("created"), "tool": document.get("tool") or "run_comparison",
                             "workload": document["config"]["workload"], "dtype": document["config"]["dtype"],
                             "sweep_param": sweep_param, "sweep_value": run.get("sweep_value"), "backend": backend,
                             "threads": result.get("threads"),
                             "median_epoch_seconds": result["median_epoch_seconds"],
                             **{f"{k}_seconds": quartiles and quartiles.get(k) for k in ("min", "q1", "q3", "max")},
                             "repeats": quartiles and quartiles.get("repeats"), "spread_from": source,
                             "speedup": result.get("speedup"), "noisy": noise_reasons(result) is not None,
                             "busy_machine": busy_note(document) is not None})
    return rows


def summary_csv(documents: list[dict]) -> str:
    """The summary rows as CSV text (empty cells for null), floats written in full (repr)."""
    return csv_text(summary_rows(documents), SUMMARY_COLUMNS)
