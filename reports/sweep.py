"""A sweep: the same workload at several sizes of one parameter, and how epoch time grows with it.

    sweep_spec('hidden=16,32,64') -> ('hidden', [16, 32, 64])      the --sweep option type
    fit_slope(sizes, seconds) -> slope of log(time) against log(size)  (1.0: time grows with the work)
    sweep_summary(param, values, runs, names) -> the results file's "sweep" entry
"""
from __future__ import annotations

import argparse

import numpy as np

SWEEP_PARAMS = {"samples": "samples", "hidden": "hidden", "batch": "batch_size", "batch-size": "batch_size",
                "batch_size": "batch_size", "seq-len": "seq_len", "seq_len": "seq_len"}
SWEEP_OPTION = {"samples": "--samples", "hidden": "--hidden", "batch_size": "--batch-size", "seq_len": "--seq-len"}


def sweep_spec(text: str) -> tuple[str, list[int]]:
    """'hidden=16,32,64' -> ('hidden', [16, 32, 64])."""
    choices = "samples, hidden, batch or seq-len"
    param, sep, values = text.partition("=")
    if not sep or param.strip() not in SWEEP_PARAMS:
        raise argparse.ArgumentTypeError(f"must look like PARAM=V1,V2,... with PARAM one of {choices}, got {text!r}")
    try:
        sizes = [int(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers separated by commas, got {values!r}") from None
    if any(v <= 0 for v in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {values!r}")
    if len(set(sizes)) < 2:
        raise argparse.ArgumentTypeError(f"a sweep needs at least two different sizes to fit a slope, got {values!r}")
    return SWEEP_PARAMS[param.strip()], sizes


def fit_slope(sizes, seconds) -> float | None:
    """Least-squares slope of log(seconds) against log(size); None with fewer than two timed points."""
    points = [(s, t) for s, t in zip(sizes, seconds) if t]
    if len({s for s, _ in points}) < 2:
        return None
    x, y = np.log([s for s, _ in points]), np.log([t for _, t in points])
    return float(np.polyfit(x, y, 1)[0])


def sweep_summary(param: str, values: list[int], runs: list[dict], names: list[str]) -> dict:
    """{param, values, median_epoch_seconds: {backend: [s | None]}, slopes: {backend: slope | None}}."""
    times = {n: [run["results"].get(n, {}).get("median_epoch_seconds") for run in runs] for n in names}
    return {"param": param, "values": values, "median_epoch_seconds": times,
            "slopes": {n: fit_slope(values, times[n]) for n in names}}
