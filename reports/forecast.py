"""Forecasts of the 24 held-out AirPassengers months, their metrics and the baselines.

Test months are the last 24 (index 120..143, 1959-01..1960-12); everything the
model or a setting choice sees comes from the months before them.

    one-step   each month forecast from the actual history before it
    24-step    recursive: each forecast fed back as history (the months 120..143 from month 119)

Metrics, for forecasts f and actual values a (passengers, thousands):
    RMSE = sqrt(mean((f - a)^2));  MAE = mean|f - a|;  MAPE = 100 * mean(|f - a| / a)
    MASE = MAE / mean|a_m - a_{m-12}| over the in-sample months 12..119 (seasonal-naive scale)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data import airpassengers, make_workload
from lstm_numpy import get_backend

FIRST_TEST = 120
HORIZON = 24
SEASON = 12

# Published figures for the airline model, ARIMA(0,1,1)(0,1,1)12 on log passengers fitted to months 0..119:
# quoted, not computed here.
AIRLINE_MODEL = {"one-step": {"RMSE": 15.3, "MAPE": 2.6}, "24-step": {"RMSE": 43.2, "MAPE": 8.5}}


def metrics(forecast: np.ndarray, actual: np.ndarray, series: np.ndarray, first_test: int = FIRST_TEST) -> dict:
    """RMSE, MAE, MAPE (%) and MASE of ``forecast`` against ``actual`` (see the module docstring)."""
    error = np.asarray(forecast, dtype=np.float64) - actual
    scale = float(np.mean(np.abs(series[SEASON:first_test] - series[:first_test - SEASON])))
    mae = float(np.mean(np.abs(error)))
    # A percentage of zero is undefined (a series with empty months); so is a scale of zero (a flat history).
    mape = float(100 * np.mean(np.abs(error) / np.abs(actual))) if np.all(actual != 0) else float("nan")
    return {"RMSE": float(np.sqrt(np.mean(error ** 2))), "MAE": mae, "MAPE": mape,
            "MASE": mae / scale if scale > 0 else float("nan")}


def persistence(series: np.ndarray, first: int = FIRST_TEST, horizon: int = HORIZON) -> dict[str, np.ndarray]:
    """Last month's value: one-step uses the month before each target, 24-step repeats month first-1."""
    months = np.arange(first, first + horizon)
    return {"one-step": series[months - 1], "24-step": np.full(horizon, series[first - 1])}


def seasonal_naive(series: np.ndarray, first: int = FIRST_TEST, horizon: int = HORIZON) -> dict[str, np.ndarray]:
    """Same month last year: one-step uses a_{m-12}, 24-step repeats the last observed year."""
    months = np.arange(first, first + horizon)
    last_year = series[first - SEASON:first]
    return {"one-step": series[months - SEASON], "24-step": last_year[(months - first) % SEASON]}


@dataclass
class ForecastRun:
    """One trained model's forecasts (passengers) and metrics."""

    seed: int
    one_step: np.ndarray
    recursive: np.ndarray
    metrics: dict            # {"one-step": {...}, "24-step": {...}}
    train_loss: list
    valid_loss: list


def forecast_run(seed: int, backend: str = "numpy", series: np.ndarray | None = None, **overrides) -> ForecastRun:
    """Train the ``light`` workload with its defaults (and ``overrides``) and forecast the test months."""
    series = airpassengers() if series is None else series
    workload = make_workload("light", seed=seed, series=series, **overrides)
    module = get_backend(backend)
    params = workload.initial_params()
    history = module.train(params, workload.data, workload.config)
    pipe = workload.pipeline
    predict = lambda X: module.predict(history.params, X, "regression")  # noqa: E731
    first = series.size - HORIZON
    one_step = pipe.one_step(predict, np.arange(first, series.size))
    recursive = pipe.recursive(predict, first, HORIZON)
    actual = series[first:]
    return ForecastRun(seed, one_step, recursive,
                       {"one-step": metrics(one_step, actual, series, first),
                        "24-step": metrics(recursive, actual, series, first)},
                       history.train_loss, history.valid_loss)


def baseline_metrics(series: np.ndarray | None = None) -> dict:
    """{baseline: {horizon: metrics}} for persistence and seasonal naive."""
    series = airpassengers() if series is None else series
    first = series.size - HORIZON
    actual = series[first:]
    return {name: {h: metrics(f, actual, series, first) for h, f in make(series, first).items()}
            for name, make in (("persistence", persistence), ("seasonal naive", seasonal_naive))}


def median_metrics(runs: list[ForecastRun]) -> dict:
    """{horizon: {metric: median over runs}}."""
    return {h: {m: float(np.median([r.metrics[h][m] for r in runs])) for m in runs[0].metrics[h]}
            for h in ("one-step", "24-step")}


__all__ = ["AIRLINE_MODEL", "ForecastRun", "baseline_metrics", "forecast_run", "median_metrics", "metrics",
           "persistence", "seasonal_naive"]
