"""Markdown tables for REPORT.md."""
from __future__ import annotations

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


def forecast_table(lstm_median: dict, baselines: dict, published: dict, seeds: int) -> str:
    """One row per method and horizon: RMSE, MAE, MAPE, MASE."""
    rows = []
    for horizon in ("one-step", "24-step"):
        m = lstm_median[horizon]
        rows.append([f"LSTM (median of {seeds} seeds)", horizon, f"{m['RMSE']:.1f}", f"{m['MAE']:.1f}",
                     f"{m['MAPE']:.1f}%", f"{m['MASE']:.2f}"])
        for name, by_horizon in baselines.items():
            b = by_horizon[horizon]
            rows.append([name, horizon, f"{b['RMSE']:.1f}", f"{b['MAE']:.1f}", f"{b['MAPE']:.1f}%", f"{b['MASE']:.2f}"])
        p = published[horizon]
        rows.append(["airline model ARIMA(0,1,1)(0,1,1)12 (published)", horizon, f"{p['RMSE']:.1f}", "", f"{p['MAPE']:.1f}%", ""])
    return markdown_table(["method", "horizon", "RMSE", "MAE", "MAPE", "MASE"], rows)


def seeds_table(runs) -> str:
    rows = [[r.seed, f"{r.metrics['one-step']['RMSE']:.2f}", f"{r.metrics['one-step']['MAPE']:.2f}%",
             f"{r.metrics['24-step']['RMSE']:.2f}", f"{r.metrics['24-step']['MAPE']:.2f}%",
             f"{r.train_loss[-1]:.4f}", f"{r.valid_loss[-1]:.4f}"] for r in runs]
    return markdown_table(["seed", "one-step RMSE", "one-step MAPE", "24-step RMSE", "24-step MAPE",
                           "final train loss", "final valid loss"], rows)
