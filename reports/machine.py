"""What machine a result was measured on (every results file records it).

    describe_machine(cuda_stats=None) -> dict      CPU model and cores, thread settings, Numba's
                                                   threading layer, library versions, BLAS, GPUs,
                                                   whether the CUDA simulator is on
    cpu_model() -> str | None                      the CPU's name
    blas_threads() -> int | None                   the threads NumPy's BLAS runs on now
    load_reading(window_s) -> dict                 the 1-minute load average and the cores other
                                                   processes use over a short window
    OthersMeter()                                  the cores other processes use between its start and read()
    peak_rss_bytes(), cpu_times()                  this process's peak memory and CPU user and sys seconds
    missing_readings() -> [str]                    the readings this system cannot give (they are null)

The machine's reference matmul rate is measured by reports.measuring.matmul_gflops.

Every field is plain JSON (str, int, float, bool, None, lists, dicts). A fact that
cannot be found is None, never a guess. Nothing here imports Numba before the caller
has had the chance to set NUMBA_ENABLE_CUDASIM.

Portability: the POSIX-only sources are guarded, so that this module imports and every reading
returns (None where it cannot be read) on Windows and macOS too: ``resource`` (peak memory; CPU
times fall back to ``os.times``), ``os.getloadavg`` (not on Windows), ``/proc`` (Linux only),
``os.sched_getaffinity`` and ``os.sysconf``.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
import time

try:
    import resource          # POSIX only; without it (Windows) peak memory is None
except ImportError:
    resource = None

import numpy as np

from parallel_lstm.lstm_numpy.backends import cuda_simulator_on

LIBRARIES = ("numpy", "numba", "numba-cuda", "llvmlite", "pandas", "cuda-bindings", "pytest-benchmark", "threadpoolctl",
             "torch")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "NUMBA_THREADING_LAYER", "NUMBA_ENABLE_CUDASIM", "CUDA_VISIBLE_DEVICES")


def cpu_model() -> str | None:
    """The CPU's marketing name (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def physical_cores() -> int | None:
    """Distinct (package, core) pairs in /proc/cpuinfo; None where that file does not say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    cores = set()
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" in fields:
            cores.add((fields.get("physical id"), fields["core id"]))
    return len(cores) or None


def usable_cores() -> int | None:
    """The cores this process may run on (its affinity mask), which a container may limit."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def blas() -> dict | None:
    """NumPy's BLAS (name, version, and the threads it runs on now) as numpy.show_config reports it."""
    try:
        config = np.show_config(mode="dicts")
        found = config["Build Dependencies"]["blas"]
        return {"name": found.get("name"), "version": found.get("version"), "threads": blas_threads()}
    except Exception:   # older NumPy has no mode="dicts"; the BLAS is then simply not recorded
        return None


def blas_threads() -> int | None:
    """The threads NumPy's BLAS runs on now (threadpoolctl): the BLAS that NumPy's wheel ships where it is
    found (another package, e.g. SciPy, may load a BLAS of its own), else the largest count of any BLAS;
    None where threadpoolctl finds none or is not installed."""
    try:
        from threadpoolctl import threadpool_info   # only here: the tools run without it, the count unknown
    except ImportError:
        return None
    libraries = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    # a wheel's BLAS lies in numpy.libs/ (Linux) or numpy/.dylibs/ (macOS): paths that begin as numpy's folder
    own = [lib for lib in libraries if lib.get("filepath", "").startswith(os.path.dirname(np.__file__))]
    counts = [lib["num_threads"] for lib in own or libraries]
    return max(counts) if counts else None


# How busy the machine is. Linux's /proc/stat counts every CPU's busy time in clock ticks; the CPU time
# of this process (all its threads) is subtracted, so what is left is other processes' work.

LOAD_WINDOW_S = 0.5      # long enough to count 10 ms ticks on every core


def busy_cpu_seconds() -> float | None:
    """CPU seconds every process has used since boot (all cores; /proc/stat); None where it does not exist."""
    try:
        with open("/proc/stat", encoding="utf-8") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
        ticks_per_s = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)       # idle + iowait
    return (sum(fields[:8]) - idle) / ticks_per_s                  # guest time is already inside user


class OthersMeter:
    """The cores other processes keep busy between its creation and ``read()``: the machine's busy CPU time
    less this process's, over the wall time between."""

    def __init__(self):
        self.start = (time.perf_counter(), time.process_time(), busy_cpu_seconds())

    def read(self) -> dict:
        """{"others_cores": float | None (None where /proc/stat does not exist), "window_s": float}."""
        wall, ours, everyone = time.perf_counter(), time.process_time(), busy_cpu_seconds()
        window = wall - self.start[0]
        if everyone is None or self.start[2] is None or window <= 0:
            return {"others_cores": None, "window_s": window}
        others = (everyone - self.start[2]) - (ours - self.start[1])
        return {"others_cores": max(0.0, others / window), "window_s": window}


def load_reading(window_s: float | None = None) -> dict:
    """How busy the machine is now: {load_1min, cores (logical), others_cores, window_s}.

    ``others_cores``: the cores other processes used over ``window_s`` seconds (this process waits meanwhile).
    """
    meter = OthersMeter()
    time.sleep(LOAD_WINDOW_S if window_s is None else window_s)
    return {"load_1min": load_average(), "cores": os.cpu_count(), **meter.read()}


def load_average() -> float | None:
    """The 1-minute load average; None where the system has none (Windows) or cannot say."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far; None without the POSIX ``resource`` module."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)   # Linux reports KiB, macOS bytes


def cpu_times() -> tuple[float, float]:
    """(user, sys) CPU seconds of this process, every thread: getrusage's microseconds where ``resource``
    exists, else ``os.times`` (Windows has it; its resolution may be coarser)."""
    if resource is None:
        times = os.times()
        return times.user, times.system
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def missing_readings() -> list[str]:
    """What this system cannot read, each with why (results hold null there); [] on Linux."""
    missing = []
    if resource is None:
        missing.append("peak memory (no resource module)")
    if load_average() is None:
        missing.append("the load average (no os.getloadavg)")
    if busy_cpu_seconds() is None:
        missing.append("the cores other processes use (no /proc/stat)")
    return missing


def numba_threads() -> dict:
    """Numba's thread count and threading layer (the one in use once a parallel kernel has run)."""
    try:
        import numba
    except ImportError:
        return {"num_threads": None, "max_threads": None, "threading_layer": None, "threading_layer_requested": None}
    try:
        layer = numba.threading_layer()
    except ValueError:      # no parallel kernel has run in this process yet
        layer = None
    return {"num_threads": numba.get_num_threads(), "max_threads": numba.config.NUMBA_NUM_THREADS,
            "threading_layer": layer, "threading_layer_requested": numba.config.THREADING_LAYER}


def nvidia_gpus() -> list[dict]:
    """GPUs that nvidia-smi lists (name, compute capability, memory, driver); [] without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = "name,compute_cap,memory.total,driver_version"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            name, cc, mem_mib, driver = parts
            gpus.append({"name": name, "compute_capability": cc,
                         "memory_bytes": int(float(mem_mib) * 2**20) if mem_mib.replace(".", "").isdigit() else None,
                         "driver": driver})
    return gpus


def describe_machine(cuda_stats: dict | None = None) -> dict:
    """The machine's facts for a results file.

    cuda_stats: the CUDA backend's stats from this run (device, compute_capability,
    simulator), when it ran; they say which device the timings come from.
    """
    cuda_stats = cuda_stats or {}
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cores": usable_cores(),
        "memory_bytes": memory_bytes(),
        "missing_readings": missing_readings(),
        "numba": numba_threads(),
        "thread_environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "libraries": library_versions(),
        "blas": blas(),
        "cuda_simulator": cuda_simulator_on(),
        "gpus": nvidia_gpus(),
        "cuda_device": {key: cuda_stats.get(key) for key in ("device", "compute_capability", "simulator")}
                       if cuda_stats else None,
    }
