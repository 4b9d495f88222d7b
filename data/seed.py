"""The ``seed`` workload: the original course project's AirPassengers pipeline.

passengers (144,) -> change (143,) = next month minus this month
                  -> normalised (143,) = change / envelope, where the envelope widens
                     with time: 0.5*i + 15 for rises, 0.6*i + 7 for falls (i = month index)
                  -> classes (143,) by 1-D k-means with 3 clusters (falls, flat, rises)
                  -> 73 windows of 12 tokens, one-hot; inputs are tokens 0..10 and
                     targets tokens 1..11 (next-token classification, T=11, D=Y=3)
                  -> split 59 / 7 / 7 windows (train / valid / test), in time order.

The original kept 73 windows; its exact window starts are not published, so
here the 73 starts are spread evenly over the 132 possible ones (stride about 1.8).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from parallel_lstm.lstm_numpy.errors import UserError

from .series import check_series

WINDOW = 12
N_WINDOWS = 73
SPLIT = (59, 7, 7)
CLASSES = 3


class SeedSeries(NamedTuple):
    """Every intermediate series (the report plots all four)."""

    passengers: np.ndarray   # (N,)
    change: np.ndarray       # (N-1,)
    envelope: np.ndarray     # (N-1,) the divisor used for each change
    normalised: np.ndarray   # (N-1,)
    classes: np.ndarray      # (N-1,) int, 0 falls, 1 flat, 2 rises
    centroids: np.ndarray    # (3,) ascending


def envelope(change: np.ndarray) -> np.ndarray:
    """The widening band of monthly change: 0.5*i + 15 above zero, 0.6*i + 7 below."""
    i = np.arange(change.size, dtype=np.float64)
    return np.where(change >= 0, 0.5 * i + 15.0, 0.6 * i + 7.0)


def kmeans_1d(values: np.ndarray, k: int = CLASSES, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm on a line, started from evenly spaced quantiles (deterministic).

    Returns (labels (N,) int, centroids (k,) ascending).
    """
    centroids = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        labels = np.argmin(np.abs(values[:, None] - centroids[None, :]), axis=1)
        if np.unique(labels).size < k:          # an empty class has no mean
            raise UserError(f"the series' normalised monthly changes do not fall into {k} distinct classes; "
                            f"the seed pipeline needs a series whose changes vary more.")
        updated = np.array([values[labels == j].mean() for j in range(k)])
        if np.array_equal(updated, centroids):
            break
        centroids = updated
    return labels, centroids


def checked_series(passengers) -> np.ndarray:
    """The series as float64 (N,), at least one window long, finite and not constant (see check_series)."""
    return check_series(passengers, WINDOW + 2, f"the seed pipeline's windows of {WINDOW}")


def seed_series(passengers: np.ndarray) -> SeedSeries:
    passengers = checked_series(passengers)
    change = np.diff(passengers)
    env = envelope(change)
    normalised = change / env
    classes, centroids = kmeans_1d(normalised)
    return SeedSeries(passengers, change, env, normalised, classes, centroids)


def one_hot(tokens: np.ndarray, k: int = CLASSES) -> np.ndarray:
    """(..., ) int -> (..., k) float64."""
    return np.eye(k)[tokens]


def window_count(n_values: int, n_windows: int = N_WINDOWS, window: int = WINDOW) -> int:
    """How many windows a series of ``n_values`` gives: its changes hold n_values - window starts."""
    return max(0, min(n_windows, n_values - window))


def seed_windows(classes: np.ndarray, n_windows: int = N_WINDOWS, window: int = WINDOW):
    """Token windows (n_windows, window), starts spread evenly over the series."""
    if classes.size < window + 1:
        raise UserError(f"the series has {classes.size + 1} values but the seed pipeline needs at least "
                        f"{window + 2}; give a longer series.")
    n = window_count(classes.size + 1, n_windows, window)
    starts = np.round(np.linspace(0, classes.size - window, n)).astype(int)
    return classes[starts[:, None] + np.arange(window)]


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, valid, test) window counts, in the original project's proportions 59 / 7 / 7."""
    n_valid = n_test = round(n * SPLIT[1] / N_WINDOWS)
    return n - n_valid - n_test, n_valid, n_test


def seed_dataset(passengers: np.ndarray):
    """X (N, 11, 3) one-hot and Y (N, 11) int for train, valid and test, plus the series.

    Returns (X_train, Y_train, X_valid, Y_valid, X_test, Y_test), SeedSeries.
    """
    passengers = checked_series(passengers)
    n = window_count(passengers.size)
    n_train, n_valid, n_test = split_sizes(n)
    # Checked before any computation, so that a short series gets this sentence and no warning.
    if min(n_train, n_valid, n_test) <= 0:
        raise UserError(f"the series gives only {n} windows of {WINDOW}, too few to split into training, "
                        f"validation and test windows; give a longer series.")
    series = seed_series(passengers)
    windows = seed_windows(series.classes)
    X, Y = one_hot(windows[:, :-1]), windows[:, 1:]
    cuts = (n_train, n_train + n_valid)
    parts = []
    for lo, hi in ((0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], n)):
        parts += [X[lo:hi], Y[lo:hi]]
    return tuple(parts), series
