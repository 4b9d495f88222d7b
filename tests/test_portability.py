"""The harness where POSIX-only sources are missing (Windows lacks ``resource`` and ``os.getloadavg``, macOS and
Windows lack ``/proc``): it imports, runs, and records null for what it cannot read, with one note.

These tests simulate the missing pieces on Linux; reports/machine.py guards them, lstm_numba_cpu/threads.py
falls back to all of Numba's threads without /proc/stat.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parallel_lstm.lstm_numba_cpu import threads as th
from parallel_lstm.lstm_numpy import memory
from parallel_lstm.reports import machine

ROOT = Path(__file__).resolve().parent.parent
# The Linux-only files this project reads (libraries such as threadpoolctl read others on Linux only, and
# use other means elsewhere, so those stay readable).
LINUX_FILES = ("/proc/stat", "/proc/cpuinfo", "/proc/meminfo", "/sys/fs/cgroup/")


def no_proc_open(real_open):
    """``open`` as on a system without the Linux files this project reads."""
    def fake_open(file, *args, **kwargs):
        if str(file).startswith(LINUX_FILES):
            raise FileNotFoundError(2, "No such file or directory", str(file))
        return real_open(file, *args, **kwargs)
    return fake_open


@pytest.fixture
def non_posix(monkeypatch):
    """machine.py and memory.py as on Windows: no resource module, no os.getloadavg, os.sched_getaffinity or
    os.sysconf, no /proc."""
    monkeypatch.setattr(machine, "resource", None)
    for name in ("getloadavg", "sched_getaffinity", "sysconf"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setattr(machine, "open", no_proc_open(open), raising=False)


def test_the_guarded_readings_are_none_without_their_sources(non_posix):
    assert machine.peak_rss_bytes() is None and machine.load_average() is None
    assert machine.busy_cpu_seconds() is None
    user, system = machine.cpu_times()                 # os.times stands in for getrusage
    assert user > 0 and system >= 0
    reading = machine.load_reading(0.01)
    assert reading["load_1min"] is None and reading["others_cores"] is None and reading["window_s"] > 0
    assert machine.missing_readings() == ["peak memory (no resource module)", "the load average (no os.getloadavg)",
                                          "the cores other processes use (no /proc/stat)"]
    described = machine.describe_machine()
    assert described["missing_readings"] == machine.missing_readings()
    assert described["memory_bytes"] is None and described["physical_cores"] is None
    assert described["usable_cores"] == os.cpu_count()
    assert memory.machine_memory_bytes() is None
    memory.check_fits(10**15, "a huge model", "never refused when the memory is unknown")


def test_nothing_is_missing_on_linux():
    if not sys.platform.startswith("linux"):
        pytest.skip("the full set of readings is Linux's")
    assert machine.missing_readings() == []
    assert machine.peak_rss_bytes() > 0


def test_numba_cpu_uses_all_its_threads_without_proc_stat(monkeypatch):
    monkeypatch.setattr(th, "open", no_proc_open(open), raising=False)
    assert th.machine_ticks() is None
    policy = th.ThreadPolicy(None)
    assert policy.mode == "all (free cores unknown here)"
    assert policy.next_epoch() == th.max_threads()


SIMULATE_NON_POSIX = f"""
import builtins, os, sys
sys.modules["resource"] = None          # import resource raises ImportError, as on Windows
del os.getloadavg, os.sched_getaffinity
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from test_portability import no_proc_open
builtins.open = no_proc_open(builtins.open)
from parallel_lstm import run_comparison
run_comparison.MATMUL_N = 64
sys.exit(run_comparison.main(sys.argv[1:]))
"""


def test_the_harness_imports_and_runs_without_resource_loadavg_or_proc(tmp_path):
    argv = ["--backends", "numpy,numba_cpu", "--workload", "light", "--hidden", "4", "--epochs", "1",
            "--repeats", "1", "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", SIMULATE_NON_POSIX, *argv], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("note: this system cannot read")]
    assert notes == ["note: this system cannot read peak memory (no resource module), the load average (no "
                     "os.getloadavg), the cores other processes use (no /proc/stat); the results hold null there."]
    assert "VERDICT: PASS" in done.stdout and " - MiB" in done.stdout
    [json_path] = tmp_path.glob("*.json")
    document = json.loads(json_path.read_text())
    assert len(document["machine"]["missing_readings"]) == 3
    for when in ("before", "after"):
        assert document["load"][when]["load_1min"] is None and document["load"][when]["others_cores"] is None
    results = document["runs"][0]["results"]
    for result in results.values():
        assert result["peak_rss_bytes"] is None and result["peak_rss_growth_bytes"] is None
        assert result["user_seconds_per_epoch"] is not None
    assert results["numba_cpu"]["stats"]["threads_mode"] == "all (free cores unknown here)"
