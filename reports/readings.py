"""Reading results documents for the report, defensively: a field an older file lacks comes back as None.

Results files are described in reports/resultfiles.py. Newer files add fields that older ones lack
(``epoch_spread``, ``speedup_spread``, ``noisy``, ``noise_reasons``, ``load``, ``scaling``,
``reference_blas_threads``, ``commit``); every reader here accepts a file with or without them.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

from .measuring import epoch_spread

REFERENCE = "numpy"
SPREAD_KEYS = ("min", "q1", "median", "q3", "max")


def number(value) -> float | None:
    """A finite float, or None for anything else (missing, null, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def first_run(document: dict) -> dict:
    return document["runs"][0]


def timed_results(document: dict, run: dict | None = None) -> dict[str, dict]:
    """The backends of a run (default: the first) that were timed, with a usable median epoch."""
    run = first_run(document) if run is None else run
    return {name: r for name, r in run["results"].items()
            if r.get("timed") and number(r.get("median_epoch_seconds"))}


def spread(result: dict) -> tuple[dict | None, str]:
    """(spread of the epoch time, where it comes from) of one result.

    ``epoch_spread`` when the file records it; else the quartiles of the recorded epoch times
    (the same statistic, reports.measuring.epoch_spread); else (None, "no spread recorded").
    """
    recorded = result.get("epoch_spread")
    if isinstance(recorded, dict) and all(number(recorded.get(k)) is not None for k in ("q1", "median", "q3")):
        repeats = recorded.get("repeats")
        return recorded, f"quartiles of {repeats} repeats" if repeats else "recorded quartiles"
    times = [number(t) for t in result.get("epoch_seconds") or []]
    if len(times) >= 2 and None not in times:
        return {**epoch_spread(times), "repeats": len(times)}, f"quartiles of the {len(times)} recorded epochs"
    return None, "no spread recorded"


def speedup_spread(result: dict) -> dict | None:
    """{q1, median, q3} of the speedup where the file records it; None otherwise."""
    recorded = result.get("speedup_spread")
    if isinstance(recorded, dict) and all(number(recorded.get(k)) is not None for k in ("q1", "median", "q3")):
        return recorded
    return None


def noise_reasons(result: dict) -> list[str] | None:
    """Why a result is marked noisy (a list, possibly empty), or None when it is not marked."""
    if result.get("noisy") is not True:
        return None
    return [str(reason) for reason in result.get("noise_reasons") or [] if reason]


def busy_note(document: dict) -> str | None:
    """A sentence when the results file says the machine was busy during the run; None otherwise."""
    load = document.get("load")
    if not isinstance(load, dict) or load.get("busy") is not True:
        return None
    notes = [str(note) for note in load.get("notes") or [] if note]
    return "machine busy during this run" + (f" ({'; '.join(notes)})" if notes else "")


def machine_key(document: dict) -> tuple:
    """(hostname, CPU model): two runs of one machine share it."""
    machine = document.get("machine") or {}
    return machine.get("hostname"), machine.get("cpu_model")


def created_at(document: dict) -> datetime | None:
    """When the run was made, as an aware datetime; None when ``created`` is missing or unreadable."""
    try:
        when = datetime.fromisoformat(str(document.get("created")))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def run_day(document: dict) -> str | None:
    """The calendar day of the run on the machine's own clock (YYYY-MM-DD)."""
    when = created_at(document)
    return when.date().isoformat() if when else None


def reference_blas_threads(document: dict):
    """The NumPy reference's BLAS thread count, where the file records it (config or machine)."""
    for section in (document.get("config") or {}, document.get("machine") or {}):
        if section.get("reference_blas_threads") is not None:
            return section["reference_blas_threads"]
    return None


def reference_text(document: dict) -> str:
    threads = reference_blas_threads(document)
    return (f"the NumPy reference ran on {threads} BLAS thread{'s' if threads != 1 else ''}" if threads is not None
            else "the reference's BLAS thread count is not recorded in this file")


def commit(document: dict) -> str | None:
    """The commit the run was made at, where the file records one."""
    for section in (document, document.get("config") or {}, document.get("machine") or {}):
        if isinstance(section.get("commit"), str) and section["commit"]:
            return section["commit"]
    return None


def kernel_version(document: dict):
    """The CUDA kernel version of a run: its config's, else the one numba_cuda's stats name."""
    version = (document.get("config") or {}).get("kernel_version")
    if version is None:
        cuda = first_run(document)["results"].get("numba_cuda") or {}
        version = (cuda.get("stats") or {}).get("kernel_version")
    return version


def machine_line(document: dict) -> str:
    m = document.get("machine") or {}
    numba = m.get("numba") or {}
    gpu = m.get("cuda_device") or {}
    gpu_text = (f", GPU {gpu.get('device')} (cc {gpu.get('compute_capability')})"
                if gpu and not gpu.get("simulator") else "")
    layer = numba.get("threading_layer")
    return (f"{m.get('cpu_model', '?')}, {m.get('usable_cores', '?')} usable cores, "
            f"{numba.get('num_threads', '?')} Numba threads{f' ({layer} layer)' if layer else ''}{gpu_text}")


def shapes_text(document: dict, run: dict | None = None) -> str:
    run = first_run(document) if run is None else run
    return ", ".join(f"{k}={v}" for k, v in ((run.get("workload") or {}).get("shapes") or {}).items())
