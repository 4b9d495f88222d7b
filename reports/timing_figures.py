"""Figures of measured times: epoch times, speedup, phase breakdown, JIT payoff, size sweeps, thread scaling,
CUDA kernel versions.

Every figure shows the spread of what it measures where the results file records one (error bars
from the quartiles, reports.readings.spread) and says "no spread recorded" where it does not; a
result marked noisy is hatched and a run made on a busy machine is named in the notes under the
figure. Bars are on a linear axis with their values printed; log axes carry labelled ticks at
chosen values only, so that labels cannot overlap.
"""
from __future__ import annotations

import math

import numpy as np

from parallel_lstm.lstm_numpy.flops import epoch_flops

from .figures import (Drawn, backend_sort, colour, log_axis, outside_legend, plt, save, short_seconds,
                      spaced_ticks, time_unit)
from .readings import (REFERENCE, busy_note, machine_line, noise_reasons, number, reference_text, spread,
                       speedup_spread, timed_results)
from .sweep import fit_slope
from .thread_scaling import ScalingSeries, amdahl_speedup

NOISY_HATCH = "///"
PHASES = (("forward_seconds", "forward (with validation)"), ("backward_seconds", "backward"),
          ("update_seconds", "update"))


def spread_note(entries: dict) -> str:
    """Where the error bars come from; entries: {panel: {label: result}} as drawn."""
    sources = [f"{panel}: {', '.join(sorted({spread(r)[1] for r in results.values()}))}"
               for panel, results in entries.items() if results]
    return "Error bars span the first to third quartile (" + "; ".join(sources) + ")."


def noisy_note(entries: dict) -> list[str]:
    """A note naming the results the measurement marked noisy (drawn hatched), or none."""
    noisy = []
    for panel, results in entries.items():
        for label, result in results.items():
            reasons = noise_reasons(result)
            if reasons is not None:
                noisy.append(f"{label} on {panel}" + (f" ({'; '.join(reasons)})" if reasons else ""))
    return ["Hatched = marked noisy by the measurement: " + "; ".join(noisy) + "."] if noisy else []


def context_notes(documents: dict) -> list[str]:
    """Busy machines and the machines the runs were made on; documents: {label: document or [documents]}."""
    pairs = [(label, d) for label, docs in documents.items() for d in (docs if isinstance(docs, list) else [docs])]
    busy = sorted({f"{label}: {busy_note(d)}" for label, d in pairs if busy_note(d)})
    notes = ["BUSY MACHINE: " + "; ".join(busy) + "."] if busy else []
    return notes + ["Machine: " + " | ".join(sorted({machine_line(d) for _, d in pairs})) + "."]


def measured_notes(documents: dict, entries: dict) -> list[str]:
    """The notes under a figure of measured times: spread, noisy results, busy machines, machines."""
    return [spread_note(entries)] + noisy_note(entries) + context_notes(documents)


def panel_title(workload: str, documents) -> str:
    """The panel's name, marked when any of its runs was made on a busy machine."""
    documents = documents if isinstance(documents, list) else [documents]
    return workload + (" [busy machine]" if any(busy_note(d) for d in documents) else "")


def draw_value_bars(ax, labels, values, lows, highs, colours, hatches, text) -> None:
    """Bars with asymmetric error bars where (low, high) are known and each value printed above its bar."""
    x = np.arange(len(labels))
    ax.bar(x, values, 0.65, color=colours, hatch=hatches, edgecolor="black", linewidth=0.6)
    for k, (value, low, high) in enumerate(zip(values, lows, highs)):
        top = value
        if low is not None and high is not None:
            ax.errorbar(k, value, yerr=[[max(value - low, 0)], [max(high - value, 0)]], color="black",
                        capsize=4, linewidth=1)
            top = max(high, value)
        ax.annotate(text(value), (k, top), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8)
    tallest = max([v for v in values] + [h for h in highs if h is not None])
    ax.set_ylim(0, tallest * 1.18)
    ax.set_xticks(x, labels, fontsize=8)


def time_bars_figure(folder, name: str, title: str, documents: dict, entries: dict) -> Drawn:
    """One panel per key of ``entries`` ({panel: {bar label: result}}), median epoch times as bars."""
    fig, axes = plt.subplots(1, len(entries), figsize=(max(6.0, 3.2 * len(entries) + 1.2), 4.2), squeeze=False)
    for ax, (panel, results) in zip(axes[0], entries.items()):
        medians = [r["median_epoch_seconds"] for r in results.values()]
        quartiles = [spread(r)[0] for r in results.values()]
        highs = [q["q3"] if q else None for q in quartiles]
        factor, unit = time_unit(max(medians + [h for h in highs if h is not None]))
        draw_value_bars(ax, list(results), [m / factor for m in medians],
                        [q["q1"] / factor if q else None for q in quartiles],
                        [h / factor if h is not None else None for h in highs],
                        [colour(r.get("backend", label)) for label, r in results.items()],
                        [NOISY_HATCH if noise_reasons(r) is not None else "" for r in results.values()],
                        lambda v, unit=unit: f"{v:.3g} {unit}")
        ax.set(title=panel_title(panel, documents[panel]), ylabel=f"median epoch wall time ({unit})")
    fig.suptitle(title, fontsize=11)
    return save(fig, folder, name, measured_notes(documents, entries))


def epoch_time_figure(folder, dtype: str, mains: dict) -> Drawn | None:
    """Median epoch time per backend, one linear panel per workload (their scales differ by orders)."""
    entries = {w: {b: timed_results(d)[b] for b in backend_sort(timed_results(d))}
               for w, d in mains.items() if timed_results(d)}
    if not entries:
        return None
    return time_bars_figure(folder, f"epoch-time-{dtype}", f"Time per training epoch, {dtype} (lower is faster)",
                            {w: mains[w] for w in entries}, entries)


def speedup_figure(folder, dtype: str, mains: dict) -> Drawn | None:
    """Speedup over the NumPy reference (T_numpy / T_backend) per workload and backend, on a linear axis."""
    bars = [(w, b, r) for w, d in mains.items() for b, r in ((b, timed_results(d)[b])
                                                              for b in backend_sort(timed_results(d)))
            if b != REFERENCE and number(r.get("speedup"))]
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(bars) + 3), 4.2))
    labels = [f"{w}\n{b}" for w, b, _ in bars]
    values = [r["speedup"] for _, _, r in bars]
    spreads = [speedup_spread(r) for _, _, r in bars]
    draw_value_bars(ax, labels, values, [s and s["q1"] for s in spreads], [s and s["q3"] for s in spreads],
                    [colour(b) for _, b, _ in bars],
                    [NOISY_HATCH if noise_reasons(r) is not None else "" for *_, r in bars], lambda v: f"{v:.3g}x")
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="NumPy reference (1x)")
    ax.set(title=f"Speedup over the NumPy reference, {dtype}\nT_numpy / T_backend (higher is faster)",
           ylabel="speedup (x)")
    ax.legend(fontsize=8, loc="upper left")
    workloads = sorted({w for w, _, _ in bars}, key=list(mains).index)
    notes = [("Error bars from the recorded speedup quartiles." if all(spreads) else
              "No spread recorded for the speedup" + ("" if not any(spreads) else " of the bars without error bars")
              + "; the epoch-time figure shows the spread of each time.")]
    by_text: dict = {}
    for w in workloads:
        by_text.setdefault(reference_text(mains[w]), []).append(w)
    notes += [f"{', '.join(ws)}: {text}." for text, ws in by_text.items()]
    notes += noisy_note({w: {b: r for w2, b, r in bars if w2 == w} for w in workloads})
    notes += context_notes({w: mains[w] for w in workloads})
    return save(fig, folder, f"speedup-{dtype}", notes)


def breakdown_panel(ax, workload: str, results: dict, notes: list) -> None:
    """Stacked forward / backward / update bars per backend, the median epoch marked beside them."""
    backends = [b for b in backend_sort(results) if isinstance(results[b].get("breakdown"), dict)]
    totals = [sum(number(results[b]["breakdown"].get(k)) or 0.0 for k, _ in PHASES) for b in backends]
    medians = [results[b]["median_epoch_seconds"] for b in backends]
    factor, unit = time_unit(max(totals + medians))
    x = np.arange(len(backends))
    bottoms = np.zeros(len(backends))
    for (key, label), shade in zip(PHASES, ("tab:blue", "tab:orange", "tab:green")):
        heights = []
        for k, backend in enumerate(backends):
            value = number(results[backend]["breakdown"].get(key))
            if value is None:
                notes.append(f"{label} of {backend} on {workload} is within the noise (null): not drawn.")
            heights.append((value or 0.0) / factor)
        bars = ax.bar(x, heights, 0.6, bottom=bottoms, color=shade, label=label, edgecolor="white", linewidth=0.5)
        ax.bar_label(bars, labels=[f"{h:.3g}" if h > 0.07 * max(totals + medians) / factor else "" for h in heights],
                     label_type="center", fontsize=7)
        bottoms += heights
    ax.scatter(x + 0.36, np.array(medians) / factor, marker="<", color="black", zorder=3, label="median whole epoch")
    for k, total in enumerate(bottoms):
        ax.annotate(f"{total:.3g} {unit}", (k, total), xytext=(0, 3), textcoords="offset points", ha="center",
                    fontsize=8)
    ax.set_ylim(0, max(list(bottoms) + [m / factor for m in medians]) * 1.2)
    ax.set_xticks(x, backends, fontsize=8)
    ax.set(ylabel=f"seconds per epoch ({unit})")


def breakdown_figure(folder, dtype: str, mains: dict) -> Drawn | None:
    """Where an epoch's time goes: forward, backward and update as stacked bars, one panel per workload."""
    panels = {w: timed_results(d) for w, d in mains.items()
              if any(isinstance(r.get("breakdown"), dict) for r in timed_results(d).values())}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.5, 3.4 * len(panels) + 2.4), 4.4), squeeze=False)
    notes = []
    for ax, (workload, results) in zip(axes[0], panels.items()):
        breakdown_panel(ax, workload, results, notes)
        ax.set_title(panel_title(workload, mains[workload]))
        for backend in backend_sort(results):
            result = results[backend]
            if not isinstance(result.get("breakdown"), dict):
                why = result.get("breakdown_skipped") or "none recorded"
                notes.append(f"{backend} on {workload}: no breakdown ({why}).")
            elif number(result["breakdown"].get("transfer_seconds")):
                notes.append(f"{backend} on {workload} also copies to and from the device once per run: "
                             f"{short_seconds(result['breakdown']['transfer_seconds'])} (not per epoch, not drawn).")
    outside_legend(axes[0][-1])
    fig.suptitle(f"Phases of a training epoch, {dtype}: differences of interleaved forward, forward+backward and "
                 f"full epochs", fontsize=10)
    repeats = sorted({r["breakdown"].get("repeats") for res in panels.values() for r in res.values()
                      if isinstance(r.get("breakdown"), dict)} - {None})
    notes.append(f"Each phase is the median of {', '.join(map(str, repeats)) or 'several'} interleaved repeats; "
                 f"no spread recorded for the phases.")
    notes += noisy_note(panels) + context_notes({w: mains[w] for w in panels})
    return save(fig, folder, f"breakdown-{dtype}", notes)


def payoff_epoch(compile_fast: float, epoch_fast: float, compile_ref: float, epoch_ref: float) -> float | None:
    """Epochs after which a backend that compiles first has caught up with the reference; None if never."""
    if epoch_fast >= epoch_ref:
        return None
    return max(compile_fast - compile_ref, 0.0) / (epoch_ref - epoch_fast)


def jit_payoff_figure(folder, dtype: str, mains: dict) -> Drawn | None:
    """Cumulative time of k epochs, compile time included, NumPy against each compiled backend; the crossing marked."""
    panels = {}
    for workload, document in mains.items():
        results = timed_results(document)
        compiled = [b for b in backend_sort(results) if b != REFERENCE and number(results[b].get("compile_seconds"))]
        if REFERENCE in results and compiled:
            panels[workload] = {b: results[b] for b in [REFERENCE] + compiled}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels) + 2.2, 4.2), squeeze=False)
    notes = []
    for ax, (workload, results) in zip(axes[0], panels.items()):
        ref = results[REFERENCE]
        ref_compile = number(ref.get("compile_seconds")) or 0.0
        crossings = {b: payoff_epoch(r["compile_seconds"], r["median_epoch_seconds"], ref_compile,
                                     ref["median_epoch_seconds"]) for b, r in results.items() if b != REFERENCE}
        reach = max([c for c in crossings.values() if c is not None] + [0.5])
        epochs = max(2, math.ceil(2 * reach), len(ref.get("train_loss") or []))
        k = np.linspace(0, epochs, 200)
        for backend, result in results.items():
            start = number(result.get("compile_seconds")) or 0.0
            ax.plot(k, start + k * result["median_epoch_seconds"], color=colour(backend), linewidth=2,
                    label=f"{backend} (compile {short_seconds(start)})")
            quartiles, _ = spread(result)
            if quartiles:
                ax.fill_between(k, start + k * quartiles["q1"], start + k * quartiles["q3"], color=colour(backend),
                                alpha=0.2, linewidth=0)
            crossing = crossings.get(backend)
            if crossing is not None:
                ax.axvline(crossing, color=colour(backend), linestyle=":", linewidth=1.2)
                ax.annotate(f"{backend} pays off\nafter {crossing:.3g} epochs", (crossing, 0), xytext=(4, 8),
                            textcoords="offset points", fontsize=7, va="bottom")
                notes.append(f"{workload}: {backend}'s JIT compile pays off after {crossing:.3g} epochs.")
            elif backend != REFERENCE:
                notes.append(f"{workload}: {backend} is not faster per epoch than NumPy, so its compile never "
                             f"pays off.")
        ax.set(title=panel_title(workload, mains[workload]), xlabel="epochs trained",
               ylabel="cumulative wall time (s)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"After how many epochs does the JIT pay off? ({dtype}: compile time + k x median epoch)", fontsize=10)
    notes.append("Shaded: k x the first to third quartile of the epoch time; the compile time is one measurement "
                 "(first minus second run on a tiny slice; with Numba's cache warm it is the time to load the code).")
    notes += measured_notes({w: mains[w] for w in panels}, panels)
    return save(fig, folder, f"jit-payoff-{dtype}", notes)


def sweep_points(document: dict) -> dict:
    """{backend: [(size, median, q1, q3)]} of a sweep file, from each run's timed results."""
    points: dict = {}
    for run in document["runs"]:
        for backend, result in timed_results(document, run).items():
            quartiles, _ = spread(result)
            points.setdefault(backend, []).append((run.get("sweep_value"), result["median_epoch_seconds"],
                                                   quartiles and quartiles["q1"], quartiles and quartiles["q3"]))
    return {b: sorted(p for p in rows if isinstance(p[0], (int, float))) for b, rows in points.items()}


def sweep_work(document: dict) -> list[tuple[float, float]]:
    """[(size, FLOPs of an epoch)] of each run of a sweep (lstm_numpy.flops, as the file records it)."""
    work = []
    for run in document["runs"]:
        workload = run.get("workload") or {}
        flops = number(workload.get("flops_per_epoch"))
        if flops is None and workload.get("shapes") and workload.get("task"):
            flops = epoch_flops(workload["shapes"], workload["task"])
        if flops and isinstance(run.get("sweep_value"), (int, float)):
            work.append((run["sweep_value"], flops))
    return sorted(work)


def sweep_slopes(document: dict) -> tuple[dict, float | None]:
    """({backend: fitted log-log slope of time against size}, the slope of the work model's FLOPs)."""
    points, work = sweep_points(document), sweep_work(document)
    fitted = {b: fit_slope([p[0] for p in rows], [p[1] for p in rows]) for b, rows in points.items()}
    expected = fit_slope([s for s, _ in work], [f for _, f in work]) if work else None
    return fitted, expected


def sweep_figure(folder, document: dict) -> Drawn | None:
    """Epoch time against the swept size, log-log, with fitted slopes and the work model's line."""
    sweep, config = document["sweep"], document["config"]
    param, points = sweep.get("param"), sweep_points(document)
    if not any(len(rows) >= 2 for rows in points.values()):
        return None
    fitted, expected = sweep_slopes(document)
    fig, ax = plt.subplots(figsize=(8.5, 4.4))
    for backend in backend_sort(points):
        rows = points[backend]
        sizes, medians = [p[0] for p in rows], np.array([p[1] for p in rows])
        low = np.array([p[1] - p[2] if p[2] is not None else 0.0 for p in rows])
        high = np.array([p[3] - p[1] if p[3] is not None else 0.0 for p in rows])
        slope = fitted.get(backend)
        ax.errorbar(sizes, medians, yerr=[low, high], color=colour(backend), marker="o", linewidth=2, capsize=3,
                    label=f"{backend} (fitted slope {slope:.2f})" if slope is not None else backend)
    work = sweep_work(document)
    anchor = points.get(REFERENCE) or points[backend_sort(points)[0]]
    work_times = []
    if work and expected is not None and dict(work).get(anchor[-1][0]):
        # through the reference's largest size, where the products weigh most in its time
        scale = anchor[-1][1] / dict(work)[anchor[-1][0]]
        work_times = [scale * f for _, f in work]
        ax.plot([s for s, _ in work], work_times, color="black", linestyle=":", linewidth=1.2,
                label=f"work model, FLOPs (slope {expected:.2f})")
    sizes = sorted({p[0] for rows in points.values() for p in rows})
    times = [v for rows in points.values() for p in rows for v in (p[1], p[2], p[3]) if v] + work_times
    log_axis(ax.xaxis, min(sizes), max(sizes), lambda v: f"{v:g}", ticks=spaced_ticks(sizes))
    log_axis(ax.yaxis, min(times) * 0.8, max(times) * 1.25, short_seconds)
    ax.set_ylim(min(times) * 0.8, max(times) * 1.25)
    ax.set(title=f"{config['workload']} ({config['dtype']}): time per epoch against {param}",
           xlabel=f"{param} (log scale)", ylabel="median epoch wall time (log scale)")
    outside_legend(ax)
    notes = measured_notes({config["workload"]: document},
                      {config["workload"]: {b: r for run in document["runs"] for b, r in
                                            timed_results(document, run).items()}})
    return save(fig, folder, f"sweep-{config['workload']}-{config['dtype']}-{param}", notes)


def plot_times(time_ax, s: ScalingSeries) -> None:
    """One backend's median epoch time per thread count, with its quartiles as error bars."""
    low = [m - q if q is not None else 0.0 for m, q in zip(s.median, s.q1)]
    high = [q - m if q is not None else 0.0 for m, q in zip(s.median, s.q3)]
    time_ax.errorbar(s.threads, s.median, yerr=[low, high], color=colour(s.backend), marker="o", capsize=3,
                     linewidth=2, label=s.backend)


def strong_panels(axes, series: list[ScalingSeries], threads: list[int]) -> None:
    """Time with the ideal T_1 / p, and speedup with the ideal p and the Amdahl fit."""
    time_ax, speed_ax = axes
    p = np.array(threads, dtype=float)
    for s in series:
        plot_times(time_ax, s)
        if 1 in s.threads:
            t1 = s.median[s.threads.index(1)]
            time_ax.plot(p, t1 / p, color=colour(s.backend), linestyle=":", linewidth=1,
                         label=f"{s.backend} ideal T_1 / p")
            speed_ax.plot(s.threads, s.speedup, color=colour(s.backend), marker="o", linewidth=2,
                          label=f"{s.backend} measured")
            for x, y, e in zip(s.threads, s.speedup, s.efficiency):
                if x > 1 and y:
                    speed_ax.annotate(f"{100 * e:.0f}% eff.", (x, y), xytext=(4, -10), textcoords="offset points",
                                      fontsize=7)
        if s.serial_fraction is not None:
            fine = np.geomspace(1, max(threads), 50)
            speed_ax.plot(fine, amdahl_speedup(s.serial_fraction, fine), color=colour(s.backend), linestyle="--",
                          linewidth=1, label=f"{s.backend} Amdahl fit, serial fraction {s.serial_fraction:.2f}")
    speed_ax.plot(p, p, color="black", linestyle=":", linewidth=1, label="ideal: speedup = p")
    speed_ax.set(ylabel="speedup over its own 1-thread run (x)")


def weak_panels(axes, series: list[ScalingSeries], threads: list[int]) -> None:
    """Time with the ideal flat line, and parallel efficiency T_1 / T_p with the ideal 1."""
    time_ax, eff_ax = axes
    for s in series:
        plot_times(time_ax, s)
        if 1 in s.threads:
            time_ax.axhline(s.median[s.threads.index(1)], color=colour(s.backend), linestyle=":", linewidth=1,
                            label=f"{s.backend} ideal: T_1")
            eff_ax.plot(s.threads, s.speedup,
                        color=colour(s.backend), marker="o", linewidth=2, label=f"{s.backend} T_1 / T_p")
    eff_ax.axhline(1.0, color="black", linestyle=":", linewidth=1, label="ideal: 1")
    eff_ax.set(ylabel="weak-scaling efficiency T_1 / T_p")


def thread_scaling_figure(folder, workload: str, dtype: str, series: list[ScalingSeries], documents: dict,
                          source: str) -> list[Drawn]:
    """Strong (and/or weak) scaling with threads: one figure per mode; ``source`` says where the data came from."""
    drawn = []
    for mode in ("strong", "weak"):
        chosen = [s for s in series if s.mode == mode]
        if not chosen:
            continue
        threads = sorted({p for s in chosen for p in s.threads})
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
        (strong_panels if mode == "strong" else weak_panels)(axes, chosen, threads)
        ideal = [s.median[s.threads.index(1)] / (max(threads) if mode == "strong" else 1)
                 for s in chosen if 1 in s.threads]
        times = [v for s in chosen for v in s.median + s.q1 + s.q3 if v] + ideal
        for ax in axes:
            log_axis(ax.xaxis, min(threads), max(threads), lambda v: f"{v:g}", ticks=spaced_ticks(threads))
            ax.set(xlabel="threads p (log scale)")
            ax.legend(fontsize=7, loc="best")
        log_axis(axes[0].yaxis, min(times) * 0.7, max(times) * 1.3, short_seconds)
        axes[0].set_ylim(min(times) * 0.7, max(times) * 1.3)
        axes[0].set(title="median epoch wall time (log scale)", ylabel="seconds per epoch")
        axes[1].set(title="speedup" if mode == "strong" else "efficiency")
        busy = " [busy machine]" if any(busy_note(d) for d in documents.values()) else ""
        fig.suptitle(f"{mode.capitalize()} scaling with threads: {workload}, {dtype}{busy}", fontsize=11)
        notes = [f"Data: {source}."]
        notes.append("Error bars span the first to third quartile." if all(s.has_spread for s in chosen)
                     else "No spread recorded for " + ", ".join(s.backend for s in chosen if not s.has_spread) + ".")
        for s in chosen:
            if mode == "strong" and s.serial_fraction is not None:
                notes.append(f"{s.backend}: Amdahl's law S(p) = 1 / (f + (1 - f) / p) with serial fraction "
                             f"f = {s.serial_fraction:.3f}; parallel efficiency T_1 / (p T_p) printed at each point.")
        notes += context_notes(documents)
        drawn.append(save(fig, folder, f"{mode}-scaling-{workload}-{dtype}", notes))
    return drawn


def cuda_versions_figure(folder, dtype: str, by_version: dict) -> Drawn | None:
    """Median epoch time of each CUDA kernel version, one panel per workload; by_version: {(workload, v): doc}."""
    entries, documents = {}, {}
    for (workload, version), document in sorted(by_version.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        result = timed_results(document).get("numba_cuda")
        if result:
            entries.setdefault(workload, {})[f"v{version}"] = result
            documents.setdefault(workload, []).append(document)
    if not entries:
        return None
    return time_bars_figure(folder, f"cuda-versions-{dtype}", f"CUDA kernel versions compared, {dtype}",
                            documents, entries)
