"""Course-report figures. Each function draws one figure and saves it as PNG and PDF.

Every figure has a title, axis labels with units and a legend where more than
one line is drawn; the caller passes the folder to write to.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")   # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data import airpassengers, airpassengers_months, seed_series  # noqa: E402

CLASS_NAMES = ("fall", "flat", "rise")
BACKEND_STYLES = {   # the reference solid and wide, the others on top of it, so coinciding lines stay visible
    "numpy": dict(color="0.6", linewidth=5, linestyle="-"),
    "numba_cpu": dict(color="tab:blue", linewidth=2, linestyle="--", marker="o", markersize=4),
    "numba_cuda": dict(color="tab:red", linewidth=1.5, linestyle=":", marker="x", markersize=6),
}


def save(fig, folder, name: str) -> list[str]:
    """Write ``name``.png and ``name``.pdf into ``folder``; return both paths."""
    os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    paths = [os.path.join(folder, f"{name}.{ext}") for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths


def outside_legend(ax) -> None:
    """A legend to the right of the axes, where it cannot hide data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)


def data_figures(folder) -> list[str]:
    """The original project's four data figures: passengers, change, normalised change, encoded change."""
    months = airpassengers_months()
    s = seed_series(airpassengers())
    change_months = months[1:]
    written = []

    fig, ax = plt.subplots(figsize=(11, 3.8))
    ax.plot(months, s.passengers, color="tab:blue")
    ax.set(title="AirPassengers: monthly international airline passengers, 1949-1960",
           xlabel="month", ylabel="passengers (thousands)")
    written += save(fig, folder, "passengers")

    fig, ax = plt.subplots(figsize=(11, 3.8))
    i = np.arange(s.change.size)
    ax.plot(change_months, s.change, color="tab:blue", label="change (next month minus this month)")
    ax.plot(change_months, 0.5 * i + 15, color="tab:orange", linestyle="--", label="envelope for rises: 0.5 i + 15")
    ax.plot(change_months, -(0.6 * i + 7), color="tab:green", linestyle="--", label="envelope for falls: -(0.6 i + 7)")
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set(title="Monthly change of passengers and its widening envelope", xlabel="month",
           ylabel="change (thousands of passengers)")
    outside_legend(ax)
    written += save(fig, folder, "change")

    fig, ax = plt.subplots(figsize=(11, 3.8))
    ax.plot(change_months, s.normalised, color="tab:blue", label="change / envelope")
    for c, name, style in zip(s.centroids, CLASS_NAMES, (":", "-.", "--")):
        ax.axhline(c, color="0.3", linestyle=style, linewidth=1, label=f"k-means centroid, {name}: {c:+.3f}")
    ax.set(title="Monthly change normalised by the envelope", xlabel="month", ylabel="normalised change (unitless)")
    outside_legend(ax)
    written += save(fig, folder, "change-normalized")

    fig, ax = plt.subplots(figsize=(11, 3.8))
    counts = np.bincount(s.classes, minlength=3)
    for k, (name, colour) in enumerate(zip(CLASS_NAMES, ("tab:red", "0.5", "tab:green"))):
        mask = s.classes == k
        ax.scatter(change_months[mask], s.normalised[mask], s=14, color=colour,
                   label=f"class {k}: {name} ({counts[k]} months)")
    ax.set(title="Normalised change encoded into 3 classes by 1-D k-means", xlabel="month",
           ylabel="normalised change (unitless)")
    outside_legend(ax)
    written += save(fig, folder, "change-encoded")
    return written


def loss_figure(folder, workload: str, losses: dict[str, dict[str, list[float]]], machine: str) -> list[str]:
    """Training and validation loss per epoch, every backend overlaid.

    losses: {backend: {"train_loss": [...], "valid_loss": [...]}}.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, key, title in zip(axes, ("train_loss", "valid_loss"), ("training", "validation")):
        for backend, curves in losses.items():
            ax.plot(np.arange(len(curves[key])), curves[key], label=backend,
                    **BACKEND_STYLES.get(backend, dict(linestyle="-.")))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(title=f"{workload}: {title} loss", xlabel="epoch",
               ylabel="cross-entropy (nats)" if workload == "seed" else "mean squared error (scaled units)")
        ax.legend(fontsize=8)
    fig.suptitle(f"Backends overlaid (lines coincide when the losses agree); {machine}", fontsize=9)
    return save(fig, folder, f"losses-{workload}")


def forecast_figure(folder, series: np.ndarray, months, runs, baselines: dict) -> list[str]:
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
