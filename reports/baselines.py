"""Classical forecasts of the same held-out months, computed here with statsmodels (optional).

Both models are fitted once, on the months before the test period (0 .. first-1), and never
see a test month while fitting:

    Holt-Winters   additive trend, multiplicative season of 12 months, on the series itself;
                   smoothing constants and initial level, trend and seasonal factors estimated
                   by statsmodels' ExponentialSmoothing
    airline model  ARIMA(0,1,1)(0,1,1)12 on the log of the series (statsmodels' SARIMAX);
                   forecasts are exp of the forecast log (the median of a log-normal forecast)

    24-step    the fitted model's forecasts of months first .. first+23 from month first-1
    one-step   the same parameters, fixed, run forward over the actual series: the forecast of
               month m is the model's prediction from the actual months before m (Holt-Winters:
               the smoothing recursions with the fitted initial states; airline: the Kalman filter
               of the fitted model applied to the whole series). Nothing is refitted.

statsmodels is an optional dependency (the ``report`` extra: ``STATSMODELS_REQUIREMENT``);
without it ``classical_forecasts`` returns None and the report says so. Both models need a
positive series.
"""
from __future__ import annotations

import numpy as np

from parallel_lstm.lstm_numpy import UserError

SEASON = 12
STATSMODELS_REQUIREMENT = "statsmodels>=0.15"   # the version these baselines were checked with
HOLT_WINTERS = "Holt-Winters (additive trend, multiplicative season)"
AIRLINE = "airline model ARIMA(0,1,1)(0,1,1)12 on log"


def holt_winters(series: np.ndarray, first: int, horizon: int) -> dict[str, np.ndarray]:
    """{"one-step", "24-step"} forecasts of months first .. first+horizon-1 (see the module docstring)."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    def model(values, **initial):
        return ExponentialSmoothing(values, trend="add", seasonal="mul", seasonal_periods=SEASON, **initial)

    fitted = model(series[:first]).fit()
    p = fitted.params
    # The whole series through the fitted model, every parameter fixed: its fitted values are one-step forecasts.
    filtered = model(series[:first + horizon], initialization_method="known", initial_level=p["initial_level"],
                     initial_trend=p["initial_trend"], initial_seasonal=p["initial_seasons"]).fit(
        smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"],
        smoothing_seasonal=p["smoothing_seasonal"], optimized=False)
    return {"one-step": np.asarray(filtered.fittedvalues[first:first + horizon]),
            "24-step": np.asarray(fitted.forecast(horizon))}


def airline(series: np.ndarray, first: int, horizon: int) -> dict[str, np.ndarray]:
    """{"one-step", "24-step"} forecasts of months first .. first+horizon-1 (see the module docstring)."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    log = np.log(series[:first + horizon])
    fitted = SARIMAX(log[:first], order=(0, 1, 1), seasonal_order=(0, 1, 1, SEASON)).fit(disp=False)
    filtered = fitted.apply(log)
    return {"one-step": np.exp(filtered.predict(start=first, end=first + horizon - 1)),
            "24-step": np.exp(fitted.forecast(horizon))}


def classical_forecasts(series: np.ndarray, first: int, horizon: int) -> dict[str, dict[str, np.ndarray]] | None:
    """{model name: {horizon: forecasts}} for Holt-Winters and the airline model; None without statsmodels."""
    series = np.asarray(series, dtype=np.float64)
    if np.any(series <= 0):
        raise UserError("Holt-Winters with a multiplicative season and the airline model on log values need a "
                        "series of positive values.")
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        return None
    return {HOLT_WINTERS: holt_winters(series, first, horizon), AIRLINE: airline(series, first, horizon)}


__all__ = ["AIRLINE", "HOLT_WINTERS", "STATSMODELS_REQUIREMENT", "airline", "classical_forecasts", "holt_winters"]
