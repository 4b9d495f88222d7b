"""Does numba_cpu hold up when another process holds a core?  ``parallel-lstm busy-check``

Every minibatch of numba_cpu crosses parallel regions that end in barriers; when another process
holds a core, a descheduled thread makes every barrier wait. This check measures the harm and the
remedy on the light shape (H=32, B=16, T=12):

1. the quiet one-thread epoch time (no other work), before and after the trials;
2. ``--trials`` trials, each with a freshly started busy process (a Python loop) that is running
   before the measuring process starts: numba_cpu with its default thread choice, then with every
   core forced (``threads`` = all cores, the old default).

Each measurement runs in a fresh process: one warm-up epoch (compilation, or loading Numba's cache),
then the median (and quartiles) of ``--epochs`` epochs. The goal: the default stays within 1.3x of
the quiet one-thread time typically (the median trial) and 1.5x in the worst trial.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from parallel_lstm.data import make_workload
from parallel_lstm.lstm_numpy import init_params
from parallel_lstm.lstm_numpy.backends import get_backend
from parallel_lstm.lstm_numpy.contract import epoch_orders
from parallel_lstm.reports.machine import load_average
from parallel_lstm.reports.commands import prog
from parallel_lstm.reports.options import OneSentenceParser, parse_or_exit, positive_int, run_tool

GOAL_TYPICAL, GOAL_WORST = 1.3, 1.5
BUSY_LOOP = "while True: pass"


def measure(threads: int | None, epochs: int, hidden: int) -> dict:
    """Median and quartiles of ``epochs`` light-shaped numba_cpu epochs after one warm-up epoch."""
    from dataclasses import replace
    w = make_workload("light", hidden=hidden, epochs=epochs + 1)
    config = replace(w.config, threads=threads)
    params = init_params(*w.sizes, seed=0, forget_bias=2.0)
    trainer = get_backend("numba_cpu").make_trainer(params, w.data, config)
    orders = iter(epoch_orders(w.data.X_train.shape[0], epochs + 1, 0))
    trainer.run_epoch(next(orders))                    # warm-up: compile or load the cache
    seconds = []
    for order in orders:
        start = time.perf_counter()
        trainer.run_epoch(order)
        seconds.append(time.perf_counter() - start)
    q1, median, q3 = np.percentile(seconds, [25, 50, 75])
    return {"median": median, "q1": q1, "q3": q3, "epochs": epochs,
            "threads_used": {str(k): v for k, v in trainer.stats["threads_used"].items()},
            "threads_mode": trainer.stats["threads_mode"]}


def measure_in_fresh_process(threads: int | None, epochs: int, hidden: int) -> dict:
    argv = [sys.executable, "-m", "parallel_lstm.reports.busy_check", "--measure", "--epochs", str(epochs), "--hidden", str(hidden)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def trial(epochs: int, hidden: int, cores: int) -> dict:
    """One busy process started first, then the default and the all-cores measurements."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)                                 # the neighbour is running before we start
        return {"default": measure_in_fresh_process(None, epochs, hidden),
                "all_cores": measure_in_fresh_process(cores, epochs, hidden)}
    finally:
        busy.kill()
        busy.wait()


def main(argv=None) -> int:
    parser = OneSentenceParser(prog=prog("busy-check"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=positive_int, default=5, help="busy trials, each with a fresh busy process (5)")
    parser.add_argument("--epochs", type=positive_int, default=60, help="timed epochs per measurement (60)")
    parser.add_argument("--hidden", type=positive_int, default=32, help="hidden units H (32)")
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args, exit_code = parse_or_exit(parser, sys.argv[1:] if argv is None else list(argv))
    if args is None:
        return exit_code
    if args.measure:
        print(json.dumps(measure(args.threads, args.epochs, args.hidden)))
        return 0
    return run_tool(prog("busy-check"), lambda: compare_busy_and_quiet(args), "interrupted ({reason}); nothing was written")


def compare_busy_and_quiet(args) -> int:
    """The quiet one-thread time before and after, then the busy trials, and the verdict."""
    cores = os.cpu_count() or 1
    print(f"light shape H={args.hidden}, B=16, T=12; {cores} cores; 1-minute load before: {load_average()}", flush=True)
    quiet = [measure_in_fresh_process(1, args.epochs, args.hidden)]
    trials = [trial(args.epochs, args.hidden, cores) for _ in range(args.trials)]
    quiet.append(measure_in_fresh_process(1, args.epochs, args.hidden))
    base = min(q["median"] for q in quiet)
    print(f"quiet, 1 thread: {1e3 * quiet[0]['median']:.3f} ms before, {1e3 * quiet[1]['median']:.3f} ms after "
          f"(ratios below divide by the faster, {1e3 * base:.3f} ms)")
    print(f"{'trial':>5} {'default ms':>11} {'ratio':>6} {'threads used':>14} {'all cores ms':>13} {'ratio':>6}")
    ratios = []
    for i, t in enumerate(trials, 1):
        d, a = t["default"], t["all_cores"]
        ratios.append(d["median"] / base)
        print(f"{i:>5} {1e3 * d['median']:>11.3f} {ratios[-1]:>6.2f} {json.dumps(d['threads_used'], separators=(',', ':')):>14} "
              f"{1e3 * a['median']:>13.3f} {a['median'] / base:>6.2f}")
    typical, worst = float(np.median(ratios)), max(ratios)
    verdict = "meets" if typical <= GOAL_TYPICAL and worst <= GOAL_WORST else "misses"
    print(f"default with a busy neighbour: typical {typical:.2f}x, worst {worst:.2f}x the quiet one-thread time; "
          f"{verdict} the goal (<= {GOAL_TYPICAL}x typical, <= {GOAL_WORST}x worst); 1-minute load after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
