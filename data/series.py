"""Loading a univariate series: the shipped AirPassengers CSV or any CSV column.

Every problem with the file gets one sentence naming it and the fix (UserError).
"""
from __future__ import annotations

import csv
import importlib.resources
import io
import re

import numpy as np
import pandas as pd

from parallel_lstm.lstm_numpy.errors import UserError
from parallel_lstm.lstm_numpy.files import check_input_file

AIRPASSENGERS = "AirPassengers.csv"
# Digits with an optional sign, decimal dot and exponent: what every CSV writer emits for a number.
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def airpassengers() -> np.ndarray:
    """The 144 monthly totals (thousands), January 1949 to December 1960, float64 (144,)."""
    text = importlib.resources.files(__package__).joinpath(AIRPASSENGERS).read_text()
    return read_series_text(text, "Passengers", AIRPASSENGERS)


def airpassengers_months() -> pd.DatetimeIndex:
    """The month of each AirPassengers value, (144,)."""
    text = importlib.resources.files(__package__).joinpath(AIRPASSENGERS).read_text()
    return pd.DatetimeIndex(pd.to_datetime(pd.read_csv(io.StringIO(text))["Month"], format="%Y-%m"))


def load_series(path, column: str) -> np.ndarray:
    """One numeric column of a CSV file as float64 (N,), checked value by value (see read_series_text)."""
    path = check_input_file(path, "data file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:   # utf-8-sig: a leading BOM is not a name
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"data file {path} cannot be read as UTF-8 text ({exc}); give a CSV file.") from None
    return read_series_text(text, column, path)


def series_option(path, column) -> np.ndarray | None:
    """The command line's ``--data FILE --column NAME`` as a series (N,), or None when both are left out."""
    if (path is None) != (column is None):
        raise UserError("--data and --column go together: give the CSV file and the name of its numeric column.")
    return None if path is None else load_series(path, column)


def read_series_text(text: str, column: str, source: str) -> np.ndarray:
    """Column ``column`` of CSV ``text``, parsed strictly: nothing is guessed.

    Every line must have as many fields as the header (an unquoted 1,234 or 112,5 splits in two);
    every value must be a plain number: digits, an optional sign, a dot for decimals and an optional
    exponent, spaces around it allowed (so no thousands separators, decimal commas, units, NaN or
    inf). Column names are matched exactly; a name that appears twice, also after removing spaces
    around it, is an error, and so is a name that matches only after removing spaces (both are
    shown with their quotes, so the spaces are visible). Blank lines before the header and after
    the last value are skipped, but one between values is a missing value, not left out. Line
    numbers count every line of the file.
    """
    rows = _csv_rows(text, source)
    if not rows:
        raise UserError(f"{source} is empty; give a CSV file with a header line and one value per line.")
    (_, header), records = rows[0], rows[1:]
    index = _column_index(header, column, source)
    values, missing, bad = [], [], []
    for line, fields in records:
        if len(fields) != len(header):
            raise UserError(f"{source}: line {line} has {len(fields)} fields, but the header has {len(header)}; "
                            f"give every line one value per column (a thousands separator or a decimal comma, "
                            f"as in 1,234 or 112,5, splits a number in two: write 1234 and 112.5).")
        raw = fields[index].strip()
        if not raw:
            missing.append(line)
        elif not PLAIN_NUMBER.fullmatch(raw) or not np.isfinite(float(raw)):
            bad.append((line, raw))
        else:
            values.append(float(raw))
    if missing:
        raise UserError(f"{source}: column {column!r} has missing values on line(s) {_lines(missing)}; "
                        f"fill or remove them.")
    if bad:
        raise UserError(f"{source}: column {column!r} has non-numeric values on line(s) {_lines([b[0] for b in bad])} "
                        f"(line {bad[0][0]} holds {bad[0][1]!r}); write plain numbers such as 1234.5, with a dot "
                        f"for decimals and no thousands separators or units.")
    if not values:
        raise UserError(f"{source}: column {column!r} has no values; add one value per line below the header.")
    return np.array(values, dtype=np.float64)


def _csv_rows(text: str, source: str) -> list[tuple[int, list[str]]]:
    """Every CSV record with the file line it ends on, blank lines before the header and after the last
    record left out; a blank line in between stays, as one empty field (a missing value, never skipped)."""
    reader = csv.reader(io.StringIO(text), strict=True)
    rows = []
    try:
        for fields in reader:
            rows.append((reader.line_num, fields or [""]))
    except csv.Error as exc:
        raise UserError(f"{source}: line {reader.line_num} is not valid CSV ({exc}); fix that line.") from None
    blank = [not "".join(fields).strip() for _, fields in rows]
    first = blank.index(False) if False in blank else len(rows)
    last = len(rows) - blank[::-1].index(False) if False in blank else first
    return rows[first:last]


def _column_index(header: list[str], column: str, source: str) -> int:
    """Where ``column`` is in the header; duplicated names and names differing only in spaces are errors."""
    stripped = [name.strip() for name in header]
    for name in dict.fromkeys(stripped):
        if stripped.count(name) > 1:
            same = [header[k] for k, other in enumerate(stripped) if other == name]
            raise UserError(f"{source}: the header names column {name!r} {len(same)} times "
                            f"({', '.join(map(repr, same))}); give every column its own name.")
    if column in header:
        return header.index(column)
    if column.strip() in stripped:
        found = header[stripped.index(column.strip())]
        raise UserError(f"{source} has no column {column!r}, only {found!r}, which differs in spaces; give the "
                        f"name exactly as written in the header, or remove the spaces from the file or the name.")
    spaced = any(name != name.strip() or not name for name in header)
    shown = ", ".join(map(repr, header)) if spaced else ", ".join(header)
    raise UserError(f"{source} has no column {column!r}; its columns are: {shown}.")


def _lines(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:5]))
    return shown + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")


def check_series(values, minimum: int, needs: str, fix: str = "give a longer series") -> np.ndarray:
    """The series as float64 (N,) when a pipeline can use it; otherwise one sentence: not one-dimensional,
    fewer than ``minimum`` values (``needs`` says what needs them, ``fix`` how to fix it), NaN or infinite
    values, or constant (no variation: it cannot be scaled)."""
    try:
        series = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError("the series must be a sequence of numbers; give a one-dimensional array.") from None
    if series.ndim != 1:
        raise UserError(f"the series must be one-dimensional, got shape {series.shape}; give one value per time step.")
    if series.size < minimum:
        raise UserError(f"the series has {series.size} values, but {needs} need at least {minimum}; {fix}.")
    if not np.isfinite(series).all():
        first = int(np.flatnonzero(~np.isfinite(series))[0])
        raise UserError(f"value {first} of the series is {series[first]}; give a series of finite numbers.")
    if series.min() == series.max():
        raise UserError(f"the series is constant (every value is {series[0]:g}), so it has no variation and "
                        f"cannot be scaled; give a series that varies.")
    return series
