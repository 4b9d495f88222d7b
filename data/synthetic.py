"""A deterministic synthetic series for the ``heavy`` and ``gpu`` workloads.

value[k] = trend + two seasonal waves + Gaussian noise, seeded; every window of T
values predicts the next one. Sizes are parameters so the same generator fills
a CPU for seconds or a GPU for about a second per epoch.
"""
from __future__ import annotations

import numpy as np

from parallel_lstm.lstm_numpy.errors import UserError
from parallel_lstm.lstm_numpy.memory import check_fits
from parallel_lstm.lstm_numpy.params import check_seed, check_sizes


def synthetic_series(length: int, seed: int = 0) -> np.ndarray:
    """(length,) float64 with zero-ish mean and unit-ish scale."""
    check_sizes(length=length)
    check_seed(seed)
    check_fits(4 * 8 * length, f"a synthetic series of {length} values", "use fewer samples")   # k, trend, waves
    k = np.arange(length, dtype=np.float64)
    rng = np.random.default_rng([seed, 0xDA7A])
    trend = 1.5 * k / length - 0.75
    seasons = 0.8 * np.sin(2 * np.pi * k / 12) + 0.3 * np.sin(2 * np.pi * k / 37 + 1.0)
    return trend + seasons + 0.1 * rng.standard_normal(length)


def valid_count(n_train: int, valid_fraction: float = 0.1) -> int:
    """Validation windows that make up ``valid_fraction`` of all windows (at least one)."""
    return max(1, round(n_train * valid_fraction / (1 - valid_fraction)))


def synthetic_windows(n_train: int, T: int, seed: int = 0, valid_fraction: float = 0.1):
    """(X_train, Y_train, X_valid, Y_valid): X (N, T, 1), Y (N, 1).

    n_train training windows; validation windows follow them in time and make
    up ``valid_fraction`` of all windows (at least one).
    """
    check_sizes(samples=n_train, seq_len=T)
    if not 0 < valid_fraction < 1:
        raise UserError(f"valid_fraction must lie strictly between 0 and 1, got {valid_fraction}.")
    n_valid = valid_count(n_train, valid_fraction)
    n = n_train + n_valid
    check_fits(8 * n * (T + 1), f"{n} synthetic windows of {T} values", "use fewer samples or a shorter window")
    series = synthetic_series(n + T, seed)
    X = np.lib.stride_tricks.sliding_window_view(series[:-1], T)[:n]   # (n, T)
    Y = series[T:T + n]
    X = np.ascontiguousarray(X)[:, :, None]
    return X[:n_train], Y[:n_train, None], X[n_train:], Y[n_train:, None]
