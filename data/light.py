"""The ``light`` workload: a one-step forecast of AirPassengers (or any univariate series).

series P (N,) -> z = transform(P) -> d (N-1,), d[j] = z[j+1] - z[j] (the change into month j+1)
              -> scaled s = (d - mean) / std, mean and std of training months only
              -> windows: s[j-12 .. j-1] (12 values) -> s[j], target month m = j+1
              -> split by target month: the last 24 months test, the 12 before validate,
                 the rest train.

The transform is one of ``TRANSFORMS``:

    log    z = log P: changes are relative (a 10% rise is the same step at any level),
           which suits a series whose swings grow with its level; needs every P > 0
    none   z = P: changes are absolute, for a series with zeros or negatives
           (sunspot counts, temperature anomalies, returns, sales with empty months)
    auto   log when every value is positive, none otherwise (the default)

The fitted pipeline records the transform it used (``transform``) and why
(``transform_reason``), so that callers can print it.

Modelling the change rather than the level is what lets a small LSTM follow the
trend beyond the range it was trained on. ``to_levels`` undoes every step and
returns forecasts in the series' own units: P_hat[m] = untransform(z[m-1] + s_hat * std + mean).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from parallel_lstm.lstm_numpy.errors import UserError

from .series import check_series

WINDOW = 12
N_TEST = 24
N_VALID = 12
NO_SPREAD = 1e-10      # a spread below this fraction of the mean |change| is no variation
TRANSFORMS = ("auto", "log", "none")


def choose_transform(series: np.ndarray, transform: str = "auto") -> tuple[str, str]:
    """The transform to use ("log" or "none") and a short reason, for ``transform`` in TRANSFORMS."""
    if transform not in TRANSFORMS:
        raise UserError(f"unknown transform {transform!r}; choose from {', '.join(TRANSFORMS)}.")
    non_positive = np.flatnonzero(series <= 0)
    if transform == "log" and non_positive.size:
        first = int(non_positive[0])
        raise UserError(f"the log transform needs positive values, but value {first} of the series is "
                        f"{series[first]:g}; use transform none (or auto) for a series with zeros or negatives.")
    if transform != "auto":
        return transform, "as asked"
    if non_positive.size:
        return "none", f"auto: value {int(non_positive[0])} is {series[non_positive[0]]:g}, so no logarithm"
    return "log", "auto: every value is positive"


def transformed(values: np.ndarray, transform: str) -> np.ndarray:
    """z = log P (transform "log") or P itself ("none")."""
    return np.log(values) if transform == "log" else np.asarray(values, dtype=np.float64)


def untransformed(z: np.ndarray, transform: str) -> np.ndarray:
    """The inverse of ``transformed``: values in the series' own units."""
    return np.exp(z) if transform == "log" else z


@dataclass(frozen=True)
class LightPipeline:
    """The transformed series and the split, for one univariate series."""

    series: np.ndarray         # (N,), original units
    window: int
    n_valid: int
    n_test: int
    mean: float
    std: float
    transform: str             # the one used: "log" or "none"
    transform_reason: str      # why: "as asked" or what auto saw

    @classmethod
    def fit(cls, series: np.ndarray, window: int = WINDOW, n_valid: int = N_VALID,
            n_test: int = N_TEST, transform: str = "auto") -> "LightPipeline":
        minimum = window + n_valid + n_test + 2
        series = check_series(series, minimum, f"windows of {window} with {n_valid} validation and "
                              f"{n_test} test months", "give a longer series or a shorter window")
        used, reason = choose_transform(series, transform)
        n_train = series.size - 1 - window - n_valid - n_test
        d = np.diff(transformed(series, used))
        # Training targets are d[window .. window+n_train-1]; their inputs start at d[0].
        fitted = d[:window + n_train]
        # The spread is the divisor of the scaling: one at rounding level (a constant growth) is none.
        if fitted.std() <= NO_SPREAD * np.abs(fitted).mean():
            step = "factor" if used == "log" else "amount"
            raise UserError(f"the series changes by the same {step} every month over its first {fitted.size + 1} "
                            f"values, so the change has no variation and cannot be scaled; give a series that varies.")
        return cls(series, window, n_valid, n_test, float(fitted.mean()), float(fitted.std()), used, reason)

    @property
    def change(self) -> np.ndarray:
        """d (N-1,): monthly change of the transformed series."""
        return np.diff(transformed(self.series, self.transform))

    @property
    def scaled(self) -> np.ndarray:
        """s (N-1,): d standardised with training statistics."""
        return (self.change - self.mean) / self.std

    @property
    def target_months(self) -> np.ndarray:
        """Month index m of every window's target, (N_windows,)."""
        return np.arange(self.window + 1, self.series.size)

    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        """X (N_windows, window, 1), Y (N_windows, 1), in time order."""
        s = self.scaled
        j = np.arange(self.window, s.size)
        X = s[j[:, None] - self.window + np.arange(self.window)]
        return X[:, :, None], s[j][:, None]

    def split(self):
        """(X_train, Y_train, X_valid, Y_valid, X_test, Y_test), split by target month."""
        X, Y = self.windows()
        a = X.shape[0] - self.n_valid - self.n_test
        b = X.shape[0] - self.n_test
        return X[:a], Y[:a], X[a:b], Y[a:b], X[b:], Y[b:]

    def to_levels(self, scaled_change: np.ndarray, previous_level: np.ndarray) -> np.ndarray:
        """Undo every step: scaled change of month m and P[m-1] -> P_hat[m], in the series' units."""
        z = transformed(previous_level, self.transform) + scaled_change * self.std + self.mean
        return untransformed(z, self.transform)

    def one_step(self, predict: Callable[[np.ndarray], np.ndarray], months: np.ndarray) -> np.ndarray:
        """One-step-ahead forecasts for target months ``months`` (each from actual history)."""
        X, _ = self.windows()
        rows = months - (self.window + 1)
        return self.to_levels(predict(X[rows])[:, 0], self.series[months - 1])

    def recursive(self, predict: Callable[[np.ndarray], np.ndarray], first_month: int, horizon: int) -> np.ndarray:
        """Forecasts for months first_month .. first_month+horizon-1, each fed back as history."""
        s = list(self.scaled[:first_month - 1])
        level = self.series[first_month - 1]
        out = np.empty(horizon)
        for k in range(horizon):
            step = predict(np.array(s[-self.window:])[None, :, None])[0, 0]
            level = self.to_levels(step, level)
            out[k] = level
            s.append(step)
        return out
