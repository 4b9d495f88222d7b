"""A sweep: the same workload at several sizes of one parameter, and how epoch time grows with it.

    sweep_spec('hidden=16,32,64') -> ('hidden', [16, 32, 64])      the --sweep option type
    fit_slope(sizes, seconds) -> slope of log(time) against log(size)  (1.0: time grows with the work)
    sweep_summary(param, values, runs, names) -> the results file's "sweep" entry

``threads=1,2,...`` is a sweep too, of a different kind: one workload, the CPU backends timed at each
thread count in the same interleaved rounds (reports.measuring.scaling_record, the results file's
``scaling``).
"""
from __future__ import annotations

import argparse

import numpy as np

SWEEP_PARAMS = {"samples": "samples", "hidden": "hidden", "batch": "batch_size", "batch-size": "batch_size",
                "batch_size": "batch_size", "seq-len": "seq_len", "seq_len": "seq_len", "threads": "threads"}
SWEEP_OPTION = {"samples": "--samples", "hidden": "--hidden", "batch_size": "--batch-size", "seq_len": "--seq-len"}
THREADS = "threads"


def sweep_spec(text: str) -> tuple[str, list[int]]:
    """'hidden=16,32,64' -> ('hidden', [16, 32, 64])."""
    choices = "samples, hidden, batch, seq-len or threads"
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
    """{param, values, median_epoch_seconds: {backend: [s | None]}, q1_epoch_seconds, q3_epoch_seconds (the
    same shape, from the rounds' spread), slopes: {backend: slope | None}}."""
    results = [[run["results"].get(n, {}) for run in runs] for n in names]
    times = {n: [r.get("median_epoch_seconds") for r in rs] for n, rs in zip(names, results)}
    quartiles = {q: {n: [(r.get("epoch_spread") or {}).get(q) for r in rs] for n, rs in zip(names, results)}
                 for q in ("q1", "q3")}
    return {"param": param, "values": values, "median_epoch_seconds": times,
            "q1_epoch_seconds": quartiles["q1"], "q3_epoch_seconds": quartiles["q3"],
            "slopes": {n: fit_slope(values, times[n]) for n in names}}
