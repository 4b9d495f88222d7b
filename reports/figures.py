"""Course-report figures: the style and saving shared by every figure, the data, loss and forecast figures.

Every figure has a title, axis labels with units and a legend where more than one line is
drawn; ``save`` writes PNG and PDF with TrueType fonts and no timestamps, so that rebuilding
from the same results files writes the same bytes. Figures of timings are in
reports/timing_figures.py.
"""
from __future__ import annotations

import dataclasses
import math
import os
import textwrap

import matplotlib

matplotlib.use("Agg")   # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator  # noqa: E402

from parallel_lstm.data import airpassengers, airpassengers_months, seed_series  # noqa: E402
from parallel_lstm.lstm_numpy.checks import rtol_for  # noqa: E402

# TrueType (42) rather than Type 3 fonts: text in the PDF stays text that course reports can embed and search.
matplotlib.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "parallel-lstm"})
# No creation date in the PDF and no software line in the PNG: the same results give the same bytes.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None}}
NOTE_FONT = 7
CLASS_NAMES = ("fall", "flat", "rise")
BACKEND_ORDER = ("numpy", "numba_cpu", "numba_cuda")
BACKEND_STYLES = {   # the reference solid and wide, the others on top of it, so coinciding lines stay visible
    "numpy": dict(color="0.6", linewidth=5, linestyle="-"),
    "numba_cpu": dict(color="tab:blue", linewidth=2, linestyle="--", marker="o", markersize=4),
    "numba_cuda": dict(color="tab:red", linewidth=1.5, linestyle=":", marker="x", markersize=6),
}
OTHER_COLOURS = ("tab:green", "tab:purple", "tab:brown", "tab:olive")


@dataclasses.dataclass
class Drawn:
    """A saved figure: its name (file stem), the PNG and PDF paths and the notes printed under it."""

    name: str
    paths: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)


def colour(backend: str) -> str:
    if backend in BACKEND_STYLES:
        return BACKEND_STYLES[backend]["color"]
    return OTHER_COLOURS[sum(map(ord, backend)) % len(OTHER_COLOURS)]


def backend_sort(names) -> list[str]:
    """The reference first, then the registered order, then anything else by name."""
    return sorted(names, key=lambda n: (BACKEND_ORDER.index(n) if n in BACKEND_ORDER else len(BACKEND_ORDER), n))


def save(fig, folder, name: str, notes=()) -> Drawn:
    """Write ``name``.png and ``name``.pdf into ``folder``, with ``notes`` printed under the axes."""
    os.makedirs(folder, exist_ok=True)
    width, height = fig.get_size_inches()
    wrapped = [line for note in notes for line in textwrap.wrap(note, width=int(width * 17))]
    bottom = (len(wrapped) * NOTE_FONT * 1.35 / 72 + 0.08) / height if wrapped else 0.0
    if wrapped:
        fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=NOTE_FONT, va="bottom", ha="left")
    fig.tight_layout(rect=(0, min(bottom, 0.45), 1, 1))
    paths = [os.path.join(folder, f"{name}.{ext}") for ext in ("png", "pdf")]
    for path, ext in zip(paths, ("png", "pdf")):
        fig.savefig(path, dpi=120, metadata=METADATA[ext])
    plt.close(fig)
    return Drawn(name, paths, list(notes))


def outside_legend(ax) -> None:
    """A legend to the right of the axes, where it cannot hide data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)


def short_seconds(value: float) -> str:
    """A duration in three significant digits and the unit that suits it: '20 ms', '1.5 s', '480 µs'."""
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(value) >= factor or unit == "µs":
            return f"{value / factor:.3g} {unit}"
    return f"{value:.3g} s"


def time_unit(largest: float) -> tuple[float, str]:
    """(divisor, unit) that shows times up to ``largest`` seconds with at most three integer digits."""
    for factor, unit in ((1.0, "s"), (1e-3, "ms")):
        if largest >= factor:
            return factor, unit
    return 1e-6, "µs"


MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9),
             tuple(np.round(np.arange(1.0, 10.0, 0.1), 1)))
MAX_TICKS = 7


def nice_log_ticks(low: float, high: float) -> list[float]:
    """Between 2 and 7 round tick values within [low, high] for a log axis: as many as fit, from the
    coarsest steps (powers of ten, thinned out over many decades) to tenths for a short span."""
    if not (0 < low < high):
        return [v for v in (low, high) if v > 0][:1]
    exponents = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    options = [[float(f"{m * 10.0 ** e:.12g}") for e in exponents for m in steps if low <= m * 10.0 ** e <= high]
               for steps in MANTISSAS]
    fitting = [ticks for ticks in options if 2 <= len(ticks) <= MAX_TICKS]
    if fitting:
        return max(fitting, key=len)
    decades = options[0]
    if len(decades) > MAX_TICKS:
        return decades[::math.ceil(len(decades) / MAX_TICKS)]
    return [float(f"{low:.3g}"), float(f"{high:.3g}")]


def spaced_ticks(values, min_ratio: float = 1.4) -> list:
    """The values, sorted, leaving out any closer than ``min_ratio`` to the one kept before it (the last kept),
    so that labels at these values cannot crowd on a log axis."""
    kept = []
    for value in sorted(set(values)):
        if not kept or value >= kept[-1] * min_ratio:
            kept.append(value)
    last = max(values) if kept else None
    if kept and kept[-1] != last:               # end on the largest value measured
        if len(kept) == 1:
            kept.append(last)
        elif last >= kept[-2] * min_ratio:
            kept[-1] = last
    return kept


def log_axis(axis, low: float, high: float, label_of, ticks=None) -> None:
    """A log axis with labelled ticks at ``ticks`` (default: nice values), no labelled minor ticks,
    so that short spans do not crowd labels on top of each other."""
    getattr(axis.axes, f"set_{axis.axis_name}scale")("log")
    ticks = list(ticks) if ticks is not None else nice_log_ticks(low, high)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_ticklabels([label_of(t) for t in ticks])
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def data_figures(folder) -> list[Drawn]:
    """The original project's four data figures: passengers, change, normalised change, encoded change."""
    months = airpassengers_months()
    s = seed_series(airpassengers())
    change_months = months[1:]
    written = []

    fig, ax = plt.subplots(figsize=(11, 3.8))
    ax.plot(months, s.passengers, color="tab:blue")
    ax.set(title="AirPassengers: monthly international airline passengers, 1949-1960",
           xlabel="month", ylabel="passengers (thousands)")
    written.append(save(fig, folder, "passengers"))

    fig, ax = plt.subplots(figsize=(11, 3.8))
    i = np.arange(s.change.size)
    ax.plot(change_months, s.change, color="tab:blue", label="change (next month minus this month)")
    ax.plot(change_months, 0.5 * i + 15, color="tab:orange", linestyle="--", label="envelope for rises: 0.5 i + 15")
    ax.plot(change_months, -(0.6 * i + 7), color="tab:green", linestyle="--", label="envelope for falls: -(0.6 i + 7)")
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set(title="Monthly change of passengers and its widening envelope", xlabel="month",
           ylabel="change (thousands of passengers)")
    outside_legend(ax)
    written.append(save(fig, folder, "change"))

    fig, ax = plt.subplots(figsize=(11, 3.8))
    ax.plot(change_months, s.normalised, color="tab:blue", label="change / envelope")
    for c, name, style in zip(s.centroids, CLASS_NAMES, (":", "-.", "--")):
        ax.axhline(c, color="0.3", linestyle=style, linewidth=1, label=f"k-means centroid, {name}: {c:+.3f}")
    ax.set(title="Monthly change normalised by the envelope", xlabel="month", ylabel="normalised change (unitless)")
    outside_legend(ax)
    written.append(save(fig, folder, "change-normalized"))

    fig, ax = plt.subplots(figsize=(11, 3.8))
    counts = np.bincount(s.classes, minlength=3)
    for k, (name, colour) in enumerate(zip(CLASS_NAMES, ("tab:red", "0.5", "tab:green"))):
        mask = s.classes == k
        ax.scatter(change_months[mask], s.normalised[mask], s=14, color=colour,
                   label=f"class {k}: {name} ({counts[k]} months)")
    ax.set(title="Normalised change encoded into 3 classes by 1-D k-means", xlabel="month",
           ylabel="normalised change (unitless)")
    outside_legend(ax)
    written.append(save(fig, folder, "change-encoded"))
    return written


def loss_figure(folder, workload: str, losses: dict[str, dict], machine: str, notes=()) -> Drawn:
    """Training and validation loss per epoch, every backend overlaid.

    losses: {backend: result with "train_loss" and "valid_loss" lists}.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, key, title in zip(axes, ("train_loss", "valid_loss"), ("training", "validation")):
        for backend in backend_sort(losses):
            curve = losses[backend][key]
            ax.plot(np.arange(len(curve)), curve, label=backend,
                    **BACKEND_STYLES.get(backend, dict(linestyle="-.", color=colour(backend))))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(title=f"{workload}: {title} loss", xlabel="epoch",
               ylabel="cross-entropy (nats)" if workload == "seed" else "mean squared error (scaled units)")
        ax.legend(fontsize=8)
    fig.suptitle(f"Backends overlaid (lines coincide when the losses agree); {machine}", fontsize=9)
    return save(fig, folder, f"losses-{workload}", notes)


def relative_differences(result: dict, reference: dict, key: str) -> np.ndarray | None:
    """|loss_backend - loss_numpy| / |loss_numpy| per epoch; None when the histories do not line up."""
    mine, theirs = result.get(key), reference.get(key)
    if not mine or not theirs or len(mine) != len(theirs) or None in mine or None in theirs:
        return None
    mine, theirs = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(mine - theirs) / np.abs(theirs)


def loss_difference_figure(folder, dtype: str, runs: dict[str, dict]) -> Drawn | None:
    """Per workload, each backend's relative loss difference from the reference per epoch, against the rtol line.

    runs: {workload: results of its run ({backend: result})}. Epochs where the losses are equal to the
    last bit have no place on a log axis; they are drawn at a floor far below the rule and said so.
    """
    rtol = rtol_for(dtype)
    floor = rtol * 1e-8
    panels = {w: r for w, r in runs.items() if "numpy" in r and any(b != "numpy" for b in r)}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.5, 4.2 * len(panels) + 1.5), 3.8), squeeze=False)
    exact, worst = [], {}
    for ax, (workload, results) in zip(axes[0], panels.items()):
        for backend in backend_sort(b for b in results if b != "numpy"):
            for key, style in (("train_loss", "-"), ("valid_loss", "--")):
                diff = relative_differences(results[backend], results["numpy"], key)
                if diff is None:
                    continue
                if np.any(diff == 0):
                    exact.append(f"{backend} {key.split('_')[0]} on {workload}: {int(np.sum(diff == 0))} of "
                                 f"{diff.size} epochs")
                worst[(workload, backend)] = max(worst.get((workload, backend), 0.0), float(np.nanmax(diff)))
                ax.plot(np.arange(diff.size), np.maximum(diff, floor), linestyle=style, color=colour(backend),
                        marker="o" if diff.size < 30 else None, markersize=3,
                        label=f"{backend}, {key.split('_')[0]} loss")
        ax.axhline(rtol, color="black", linewidth=1.2, label=f"rtol {rtol:g} ({dtype}): the equivalence rule")
        ax.set_yscale("log")
        ax.set_ylim(floor / 3, rtol * 30)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(title=f"{workload}: |loss - loss_numpy| / |loss_numpy|", xlabel="epoch",
               ylabel="relative difference (log scale)")
        ax.legend(fontsize=7, loc="upper right")
    notes = ["Worst relative difference: " + "; ".join(f"{b} on {w} {v:.1e}" for (w, b), v in worst.items()) + "."]
    if exact:
        notes.append(f"Equal to the last bit (drawn at {floor:g}): " + "; ".join(exact) + ".")
    return save(fig, folder, f"loss-difference-{dtype}", notes)


def forecast_figure(folder, series: np.ndarray, months, runs, baselines: dict) -> Drawn:
    """Forecast against actual for the test months, one-step and 24-step, with the baselines.

    runs: ForecastRun list (every seed drawn thin, their median, the ensemble forecast, bold);
    baselines: {name: {horizon: forecasts}}, each in its own style.
    """
    first = series.size - len(runs[0].one_step)
    test_months = months[first:]
    styles = [dict(color=c, linestyle=ls) for c, ls in (("tab:orange", "--"), ("tab:green", ":"), ("tab:red", "-."),
                                                        ("tab:purple", (0, (5, 1, 1, 1))), ("tab:brown", (0, (1, 2))))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, (horizon, attr) in zip(axes, (("one-step", "one_step"), ("24-step", "recursive"))):
        ax.plot(months[first - 24:first + 1], series[first - 24:first + 1], color="0.3", label="history")
        ax.plot(test_months, series[first:], color="black", linewidth=2, label="actual")
        forecasts = np.array([getattr(r, attr) for r in runs])
        for f in forecasts:
            ax.plot(test_months, f, color="tab:blue", linewidth=0.6, alpha=0.5)
        ax.plot(test_months, np.median(forecasts, axis=0), color="tab:blue", linewidth=2,
                label=f"LSTM ensemble: median of {len(runs)} seeds (thin: each seed)")
        for (name, by_horizon), style in zip(baselines.items(), styles):
            ax.plot(test_months, by_horizon[horizon], label=name, **style)
        ax.set(title=f"{horizon} forecast of the 24 test months", xlabel="month", ylabel="passengers (thousands)")
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend(fontsize=6.5, loc="upper left")
    return save(fig, folder, "forecast")
