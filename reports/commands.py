"""The ``parallel-lstm`` command: every tool of the project under one name, from any folder.

    parallel-lstm compare [options]      the harness (``python run_comparison.py`` in a checkout)
    parallel-lstm report [options]       the course report from results files
    parallel-lstm TOOL --help            a tool's options, without starting any work

Each tool keeps its own ``main(argv) -> exit code``; this module only picks the tool by its
subcommand, so an option means the same thing however the tool is started. ``prog(tool)`` is the
name every tool's usage line and error hints use, so what the user is told to run exists for them.
"""
from __future__ import annotations

import importlib
import sys

COMMAND = "parallel-lstm"

# subcommand: (module with main(argv), what it does in one line)
TOOLS = {
    "compare": ("parallel_lstm.run_comparison",
                "train every backend on one workload, check their losses against the reference, time them"),
    "report": ("parallel_lstm.reports.build", "build the course report (REPORT.md, figures, summary CSV) from results"),
    "forecast": ("parallel_lstm.reports.forecast",
                 "train on any series (AirPassengers by default) and forecast its last 24 values, with baselines"),
    "backtest": ("parallel_lstm.reports.backtest",
                 "score forecast settings on the months before the test period (the record: reports/backtest.py)"),
    "bench": ("parallel_lstm.reports.cpu_bench", "benchmark numba_cpu against NumPy on every thread and on one"),
    "busy-check": ("parallel_lstm.reports.busy_check", "time numba_cpu beside a busy neighbour process"),
    "gpu-check": ("parallel_lstm.reports.gpu_check", "validate every CUDA kernel version on a GPU, then time them"),
    "ptx-check": ("parallel_lstm.lstm_numba_cuda.ptx_check",
                  "compile every CUDA kernel for sm_90 without a GPU; registers, spills, occupancy"),
    "napkin": ("parallel_lstm.lstm_numba_cuda.napkin", "predict every CUDA version's epoch on an H200, no GPU needed"),
}


def prog(tool: str) -> str:
    """The command line that starts ``tool``, as its usage line and hints should name it."""
    return f"{COMMAND} {tool}"


def usage() -> str:
    width = max(map(len, TOOLS))
    lines = [f"usage: {COMMAND} TOOL [options]", "",
             "A from-scratch LSTM trained by NumPy, Numba parallel-CPU and Numba CUDA kernels.", "", "tools:"]
    lines += [f"  {name:{width}}  {summary}" for name, (_, summary) in TOOLS.items()]
    lines += ["", f"{COMMAND} TOOL --help shows a tool's options without starting any work."]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the tool named by the first argument with the rest; return its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from importlib.metadata import PackageNotFoundError, version
        try:
            print(f"{COMMAND} {version('parallel-lstm')}")
        except PackageNotFoundError:
            print(f"{COMMAND} (not installed: running from a checkout)")
        return 0
    if argv[0] not in TOOLS:
        print(f"{COMMAND}: error: unknown tool {argv[0]!r}; choose from {', '.join(TOOLS)} "
              f"({COMMAND} --help says what each does).", file=sys.stderr)
        return 2
    module, _ = TOOLS[argv[0]]
    return importlib.import_module(module).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
