"""Epoch time against thread count, one series per backend, from any of the three places a file records it.

    from_scaling_field(document)   the results document's top-level ``scaling`` entry:
                                   {backend: {threads, median_seconds, q1_seconds, q3_seconds, speedup_vs_1,
                                              parallel_efficiency, serial_fraction, mode: strong | weak}}
    from_threads_sweep(document)   a ``--sweep threads=...`` run: one run per thread count
    from_pair(many, one)           a one-thread run and a many-thread run of the same machine and day

Speedup here is T_1 / T_p and parallel efficiency T_1 / (p T_p) of the SAME backend, so both are
defined only where that backend's one-thread time was measured. Amdahl's law,
S(p) = 1 / (f + (1 - f) / p), is fitted by least squares in 1/S (linear in the serial fraction f)
wherever the file does not give f.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .readings import number, spread, timed_results


@dataclasses.dataclass
class ScalingSeries:
    backend: str
    threads: list[int]
    median: list[float]
    q1: list[float | None]
    q3: list[float | None]
    speedup: list[float | None]          # T_1 / T_p; None where no one-thread time exists
    efficiency: list[float | None]       # T_1 / (p T_p)
    serial_fraction: float | None
    mode: str = "strong"

    @property
    def has_spread(self) -> bool:
        return any(v is not None for v in self.q1 + self.q3)


def amdahl_serial_fraction(threads, speedups) -> float | None:
    """Least-squares serial fraction f of 1/S = f (1 - 1/p) + 1/p over the points with p > 1; None without any."""
    points = [(p, s) for p, s in zip(threads, speedups) if s and p > 1]
    if not points:
        return None
    b = np.array([1 - 1 / p for p, _ in points])
    a = np.array([1 / s - 1 / p for p, s in points])
    return float(np.clip(a @ b / (b @ b), 0.0, 1.0))


def amdahl_speedup(serial_fraction: float, threads) -> np.ndarray:
    p = np.asarray(threads, dtype=float)
    return 1.0 / (serial_fraction + (1.0 - serial_fraction) / p)


def series_from_times(backend: str, threads: list[int], median: list[float], q1: list, q3: list,
                      mode: str = "strong", serial_fraction: float | None = None) -> ScalingSeries:
    """A series sorted by thread count, with speedup and efficiency against its own one-thread time."""
    order = np.argsort(threads, kind="stable")
    threads, median = [int(threads[i]) for i in order], [median[i] for i in order]
    q1, q3 = [q1[i] for i in order], [q3[i] for i in order]
    t1 = median[threads.index(1)] if 1 in threads else None
    speedups = [t1 / t if t1 else None for t in median]
    efficiency = [s / p if s else None for s, p in zip(speedups, threads)]
    if serial_fraction is None and mode == "strong":
        serial_fraction = amdahl_serial_fraction(threads, speedups)
    return ScalingSeries(backend, threads, median, q1, q3, speedups, efficiency, serial_fraction, mode)


def from_scaling_field(document: dict) -> list[ScalingSeries]:
    """Series from the top-level ``scaling`` entry; entries that do not hold together are left out."""
    series = []
    for backend, entry in sorted((document.get("scaling") or {}).items()):
        if not isinstance(entry, dict):
            continue
        threads = entry.get("threads") or []
        median = [number(v) for v in entry.get("median_seconds") or []]
        if len(threads) < 2 or len(median) != len(threads) or None in median \
                or not all(isinstance(p, int) and p > 0 for p in threads):
            continue
        q1 = [number(v) for v in entry.get("q1_seconds") or [None] * len(threads)]
        q3 = [number(v) for v in entry.get("q3_seconds") or [None] * len(threads)]
        if len(q1) != len(threads) or len(q3) != len(threads):
            q1 = q3 = [None] * len(threads)
        mode = "weak" if entry.get("mode") == "weak" else "strong"
        series.append(series_from_times(backend, threads, median, q1, q3, mode, number(entry.get("serial_fraction"))))
    return series


def from_threads_sweep(document: dict) -> list[ScalingSeries]:
    """Series from a sweep of threads: each run's timed results at its thread count."""
    points: dict = {}
    for run in document["runs"]:
        for backend, result in timed_results(document, run).items():
            p = result.get("threads") or run.get("sweep_value")
            if backend == "numpy" or not isinstance(p, int) or result.get("is_device"):
                continue        # the reference's BLAS threads are not what the sweep sets
            quartiles, _ = spread(result)
            points.setdefault(backend, []).append((p, result["median_epoch_seconds"],
                                                   quartiles and quartiles["q1"], quartiles and quartiles["q3"]))
    return [series_from_times(backend, *map(list, zip(*rows))) for backend, rows in sorted(points.items())
            if len({p for p, *_ in rows}) >= 2]


def from_pair(many: dict, one: dict, backends: list[str]) -> list[ScalingSeries]:
    """Two-point series (1 and p threads) of ``backends`` from a one-thread and a many-thread run."""
    series = []
    for backend in backends:
        rows = []
        for document in (one, many):
            result = timed_results(document)[backend]
            quartiles, _ = spread(result)
            rows.append((result["threads"], result["median_epoch_seconds"],
                         quartiles and quartiles["q1"], quartiles and quartiles["q3"]))
        series.append(series_from_times(backend, *map(list, zip(*rows))))
    return series


def scaling_series(document: dict) -> list[ScalingSeries]:
    """The series of a file chosen for its thread scaling: its ``scaling`` entry, else its sweep of threads."""
    return from_scaling_field(document) or (from_threads_sweep(document)
                                            if (document.get("sweep") or {}).get("param") == "threads" else [])
