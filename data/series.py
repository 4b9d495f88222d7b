"""Loading a univariate series: the shipped AirPassengers CSV or any CSV column.

Every problem with the file gets one sentence naming it and the fix (UserError).
"""
from __future__ import annotations

import importlib.resources
import io
import os

import numpy as np
import pandas as pd

from lstm_numpy.errors import UserError

AIRPASSENGERS = "AirPassengers.csv"


def airpassengers() -> np.ndarray:
    """The 144 monthly totals (thousands), January 1949 to December 1960, float64 (144,)."""
    text = importlib.resources.files(__package__).joinpath(AIRPASSENGERS).read_text()
    return read_series_text(text, "Passengers", AIRPASSENGERS)


def airpassengers_months() -> pd.DatetimeIndex:
    """The month of each AirPassengers value, (144,)."""
    text = importlib.resources.files(__package__).joinpath(AIRPASSENGERS).read_text()
    return pd.DatetimeIndex(pd.to_datetime(pd.read_csv(io.StringIO(text))["Month"], format="%Y-%m"))


def load_series(path, column: str) -> np.ndarray:
    """One numeric column of a CSV file as float64 (N,), checked value by value."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"data file {path} does not exist; check the path given to --data.")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"data file {path} cannot be read as UTF-8 text ({exc}); give a CSV file.") from None
    return read_series_text(text, column, path)


def read_series_text(text: str, column: str, source: str) -> np.ndarray:
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{source} is not a readable CSV file ({str(exc).strip()}).") from None
    if column not in frame.columns:
        raise UserError(f"{source} has no column {column!r}; its columns are: {', '.join(map(str, frame.columns))}.")
    raw = frame[column].str.strip()
    values = pd.to_numeric(raw, errors="coerce")
    missing = np.flatnonzero(raw.eq("").to_numpy())
    bad = np.flatnonzero((values.isna() & raw.ne("")).to_numpy() | ~np.isfinite(values.fillna(0).to_numpy()))
    # Rows are reported as file line numbers: the header is line 1.
    if missing.size:
        raise UserError(f"{source}: column {column!r} has missing values on line(s) {_lines(missing)}; fill or remove them.")
    if bad.size:
        raise UserError(f"{source}: column {column!r} has non-numeric values on line(s) {_lines(bad)}; fix or remove them.")
    if len(values) == 0:
        raise UserError(f"{source}: column {column!r} has no values.")
    return values.to_numpy(dtype=np.float64)


def _lines(rows: np.ndarray) -> str:
    shown = ", ".join(str(r + 2) for r in rows[:5])
    return shown + (f" and {rows.size - 5} more" if rows.size > 5 else "")
