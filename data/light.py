"""The ``light`` workload: a one-step forecast of AirPassengers (or any univariate series).

series P (N,) -> z = transform(P) -> d (N-K,): z differenced at each lag of ``difference`` in turn,
                 K the lags' sum; d[j] is the change into month j+K
              -> scaled s = (d - mean) / std, mean and std of training months only
              -> windows: s[j-12 .. j-1] (12 values) -> s[j], target month m = j+K
              -> split by target month: the last 24 months test, the 12 before validate,
                 the rest train.

The difference lags (any whole numbers of months; these three are the ones meant):

    (1,)      d[j] = z[j+1] - z[j], the change from last month (the default; the timing
              workload's recorded shapes are this one's)
    (12,)     d[j] = z[j+12] - z[j], the change from the same month last year (seasonal
              differencing): the season moves into the base the change is added to
    (1, 12)   d[j] = (z[j+13] - z[j+12]) - (z[j+1] - z[j]), how this month's change differs
              from the same month's change last year: the airline model's (1 - B)(1 - B^12)

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
returns forecasts in the series' own units: P_hat[m] = untransform(base[m] + s_hat * std + mean),
where base[m] = z[m] - d[m] is what the months before m fix (z[m-1] for lag 1, z[m-12] for lag 12,
z[m-1] + z[m-12] - z[m-13] for lags 1 and 12).
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
DIFFERENCE = (1,)      # the default lags: the change from last month


def check_difference(difference) -> tuple[int, ...]:
    """The lags as a tuple, from one lag or a sequence of them, each a whole number of at least 1;
    otherwise one sentence."""
    lags = tuple(difference) if isinstance(difference, (tuple, list)) else (difference,)
    if not lags or any(isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 1 for lag in lags):
        raise UserError(f"the difference lags must be whole numbers of months of at least 1 (1: from last month, "
                        f"12: from the same month last year, (1, 12): both), got {difference!r}.")
    return tuple(int(lag) for lag in lags)


def differenced(z: np.ndarray, lags: tuple[int, ...]) -> np.ndarray:
    """d (N-K,), K = sum(lags): z (N,) differenced at each lag in turn; d[j] belongs to month j+K."""
    for lag in lags:
        z = z[lag:] - z[:-lag]
    return z


def difference_weights(lags: tuple[int, ...]) -> np.ndarray:
    """w (K+1,): the product of (1 - B^lag) over ``lags`` expanded, so that d[m-K] = sum_k w[k] z[m-k]."""
    w = np.array([1.0])
    for lag in lags:
        w = np.r_[w, np.zeros(lag)] - np.r_[np.zeros(lag), w]
    return w


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
    difference: tuple          # the lags, e.g. (1,) or (1, 12)
    n_valid: int
    n_test: int
    mean: float
    std: float
    transform: str             # the one used: "log" or "none"
    transform_reason: str      # why: "as asked" or what auto saw

    @classmethod
    def fit(cls, series: np.ndarray, window: int = WINDOW, n_valid: int = N_VALID,
            n_test: int = N_TEST, transform: str = "auto", difference=DIFFERENCE) -> "LightPipeline":
        lags = check_difference(difference)
        minimum = window + sum(lags) + n_valid + n_test + 1      # at least one training window
        series = check_series(series, minimum, f"windows of {window} of changes over {'+'.join(map(str, lags))} "
                              f"months with {n_valid} validation and {n_test} test months",
                              "give a longer series or a shorter window")
        used, reason = choose_transform(series, transform)
        n_train = series.size - sum(lags) - window - n_valid - n_test
        d = differenced(transformed(series, used), lags)
        # Training targets are d[window .. window+n_train-1]; their inputs start at d[0].
        fitted = d[:window + n_train]
        # The spread is the divisor of the scaling: one at rounding level (a constant growth) is none.
        if fitted.std() <= NO_SPREAD * np.abs(fitted).mean():
            step = "factor" if used == "log" else "amount"
            period = ("every month" if lags == (1,) else f"over every {lags[0]} months" if len(lags) == 1
                      else f"at lags {' and '.join(map(str, lags))}")
            raise UserError(f"the series changes by the same {step} {period} over its first {fitted.size + sum(lags)} "
                            f"values, so the change has no variation and cannot be scaled; give a series that varies.")
        return cls(series, window, lags, n_valid, n_test, float(fitted.mean()), float(fitted.std()), used, reason)

    @property
    def order(self) -> int:
        """K: the months one change spans, the sum of the lags."""
        return sum(self.difference)

    @property
    def change(self) -> np.ndarray:
        """d (N-K,): the transformed series differenced at every lag."""
        return differenced(transformed(self.series, self.transform), self.difference)

    @property
    def scaled(self) -> np.ndarray:
        """s (N-K,): d standardised with training statistics."""
        return (self.change - self.mean) / self.std

    @property
    def target_months(self) -> np.ndarray:
        """Month index m of every window's target, (N_windows,)."""
        return np.arange(self.window + self.order, self.series.size)

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

    def to_levels(self, scaled_change: np.ndarray, levels: np.ndarray, months: np.ndarray) -> np.ndarray:
        """Undo every step: P_hat[m] (M,) for target months m (M,) from their scaled changes (M,) and the
        levels before them (``levels`` (>= max m,): actual or already forecast, series units)."""
        z = transformed(np.asarray(levels), self.transform)
        w = difference_weights(self.difference)
        # base[m] = z[m] - d[m] = -sum_{k>=1} w[k] z[m-k]; for lag 1 exactly z[m-1].
        base = -sum(w[k] * z[months - k] for k in np.flatnonzero(w[1:]) + 1)
        return untransformed(base + scaled_change * self.std + self.mean, self.transform)

    def one_step(self, predict: Callable[[np.ndarray], np.ndarray], months: np.ndarray) -> np.ndarray:
        """One-step-ahead forecasts for target months ``months`` (each from actual history)."""
        X, _ = self.windows()
        rows = months - (self.window + self.order)
        return self.to_levels(predict(X[rows])[:, 0], self.series, months)

    def recursive(self, predict: Callable[[np.ndarray], np.ndarray], first_month: int, horizon: int) -> np.ndarray:
        """Forecasts for months first_month .. first_month+horizon-1, each fed back as history."""
        s = list(self.scaled[:first_month - self.order])   # the known changes, into months K .. first_month-1
        levels = list(self.series[:first_month])           # actual levels; each forecast is appended
        for m in range(first_month, first_month + horizon):
            step = predict(np.array(s[-self.window:])[None, :, None])[0, 0]
            # The base reaches back up to K months: beyond the first 12 steps of lag 12 it holds forecasts.
            levels.append(self.to_levels(step, levels, m))
            s.append(step)
        return np.array(levels[first_month:])
