"""The ``light`` workload: a one-step forecast of AirPassengers (or any positive series).

passengers P (N,) -> log P -> d (N-1,), d[j] = log P[j+1] - log P[j] (the change into month j+1)
                  -> scaled s = (d - mean) / std, mean and std of training months only
                  -> windows: s[j-12 .. j-1] (12 values) -> s[j], target month m = j+1
                  -> split by target month: the last 24 months test, the 12 before validate,
                     the rest train.

Modelling the change of the log rather than the level is what lets a small LSTM
follow the trend beyond the range it was trained on. ``to_passengers`` undoes
every step: P_hat[m] = exp(log P[m-1] + s_hat * std + mean).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lstm_numpy.errors import UserError

from .series import check_series

WINDOW = 12
N_TEST = 24
N_VALID = 12
NO_SPREAD = 1e-10      # a spread below this fraction of the mean |change| is no variation


@dataclass(frozen=True)
class LightPipeline:
    """The transformed series and the split, for one positive series."""

    passengers: np.ndarray     # (N,)
    window: int
    n_valid: int
    n_test: int
    mean: float
    std: float

    @classmethod
    def fit(cls, passengers: np.ndarray, window: int = WINDOW, n_valid: int = N_VALID,
            n_test: int = N_TEST) -> "LightPipeline":
        minimum = window + n_valid + n_test + 2
        passengers = check_series(passengers, minimum, f"windows of {window} with {n_valid} validation and "
                                  f"{n_test} test months", "give a longer series or a shorter window")
        if np.any(passengers <= 0):
            first = int(np.flatnonzero(passengers <= 0)[0])
            raise UserError(f"the light pipeline takes logarithms, but value {first} of the series is "
                            f"{passengers[first]:g}; give a series of positive values.")
        n_train = passengers.size - 1 - window - n_valid - n_test
        d = np.diff(np.log(passengers))
        # Training targets are d[window .. window+n_train-1]; their inputs start at d[0].
        fitted = d[:window + n_train]
        # The spread is the divisor of the scaling: one at rounding level (a constant growth rate) is none.
        if fitted.std() <= NO_SPREAD * np.abs(fitted).mean():
            raise UserError(f"the series changes by the same factor every month over its first {fitted.size + 1} "
                            f"values, so the change has no variation and cannot be scaled; give a series that varies.")
        return cls(passengers, window, n_valid, n_test, float(fitted.mean()), float(fitted.std()))

    @property
    def change(self) -> np.ndarray:
        """d (N-1,): monthly change of the log."""
        return np.diff(np.log(self.passengers))

    @property
    def scaled(self) -> np.ndarray:
        """s (N-1,): d standardised with training statistics."""
        return (self.change - self.mean) / self.std

    @property
    def target_months(self) -> np.ndarray:
        """Month index m of every window's target, (N_windows,)."""
        return np.arange(self.window + 1, self.passengers.size)

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

    def to_passengers(self, scaled_change: np.ndarray, previous_level: np.ndarray) -> np.ndarray:
        """Undo every step: scaled change of month m and P[m-1] -> P_hat[m]."""
        return np.exp(np.log(previous_level) + scaled_change * self.std + self.mean)

    def one_step(self, predict: Callable[[np.ndarray], np.ndarray], months: np.ndarray) -> np.ndarray:
        """One-step-ahead forecasts in passengers for target months ``months`` (each from actual history)."""
        X, _ = self.windows()
        rows = months - (self.window + 1)
        return self.to_passengers(predict(X[rows])[:, 0], self.passengers[months - 1])

    def recursive(self, predict: Callable[[np.ndarray], np.ndarray], first_month: int, horizon: int) -> np.ndarray:
        """Forecasts for months first_month .. first_month+horizon-1, each fed back as history."""
        s = list(self.scaled[:first_month - 1])
        level = self.passengers[first_month - 1]
        out = np.empty(horizon)
        for k in range(horizon):
            step = predict(np.array(s[-self.window:])[None, :, None])[0, 0]
            level = self.to_passengers(step, level)
            out[k] = level
            s.append(step)
        return out
