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
