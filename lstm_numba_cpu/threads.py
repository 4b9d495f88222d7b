"""How many threads numba_cpu runs: the user's choice, else the cores that other work leaves free.

Why not simply all cores: every minibatch crosses parallel regions that end in a barrier. When another
process holds a core, one of our threads is descheduled for a whole time slice and every barrier waits
for it, so two threads on a 2-core machine with one busy neighbour run several times slower than one
thread. The results do not depend on the thread count (every output element is summed by one thread in
one fixed order), so the count may change from one epoch to the next without changing a single bit.

The free cores are read from the kernel's counters (Linux ``/proc/stat``): over a window of at least
``WINDOW_S`` seconds, the CPU time every process used, less the time this process used, is what other
work took; free = cores - other work / window. Where those counters do not exist, all of Numba's threads
are used (the behaviour of an explicit ``threads``).
"""
from __future__ import annotations

import math
import os
import time

import numba

from parallel_lstm.lstm_numpy.errors import UserError

WINDOW_S = 0.2       # re-decide at most this often: /proc/stat counts in 10 ms ticks
FIRST_WINDOW_S = 0.05
SLACK = 0.3          # a core counts as free when others leave at least 70% of it


def max_threads() -> int:
    return numba.config.NUMBA_NUM_THREADS


def check_threads(threads: int | None) -> int | None:
    """An explicit thread count must fit under NUMBA_NUM_THREADS (set before Python starts)."""
    if threads is not None and threads > max_threads():
        raise UserError(f"{threads} threads requested but Numba allows at most {max_threads()}; "
                        f"set NUMBA_NUM_THREADS={threads} before starting Python or ask for fewer.")
    return threads


def machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat; None where it does not exist."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)       # idle + iowait
    total = sum(fields[:8])                                        # guest time is already inside user
    return total - idle, total


class FreeCores:
    """Cores left free by other processes, measured between two calls of ``sample``."""

    def __init__(self):
        self.ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._reading()

    def _reading(self):
        ticks = machine_ticks()
        return None if ticks is None else (time.perf_counter(), time.process_time(), ticks[0])

    def available(self) -> bool:
        return self.last is not None

    def sample(self, min_window: float = WINDOW_S) -> float | None:
        """Free cores over the window since the last sample; None while the window is shorter than
        ``min_window`` (the last reading is then kept) or where the counters do not exist."""
        if self.last is None:
            return None
        now = self._reading()
        wall = now[0] - self.last[0]
        if wall < min_window:
            return None
        ours = now[1] - self.last[1]
        everyone = (now[2] - self.last[2]) / self.ticks_per_s
        self.last = now
        others = max(0.0, everyone - ours)
        return (os.cpu_count() or 1) - others / wall


def threads_for(free: float, limit: int) -> int:
    """The thread count for ``free`` cores: at least 1, at most ``limit``."""
    return max(1, min(limit, math.floor(free + SLACK)))


class ThreadPolicy:
    """The thread count of each epoch: fixed when the user chose one, else the free cores.

    ``used`` counts the epochs run with each thread count, for the results files.
    """

    def __init__(self, threads: int | None):
        self.fixed = check_threads(threads)
        self.free = None if self.fixed is not None else FreeCores()
        self.current = self.fixed or max_threads()
        if self.free is not None and self.free.available():
            time.sleep(FIRST_WINDOW_S)     # a first look at the machine before the first epoch
            self._update(self.free.sample(FIRST_WINDOW_S))
        self.used: dict[int, int] = {}

    @property
    def mode(self) -> str:
        if self.fixed is not None:
            return "fixed"
        return "free cores" if self.free.available() else "all (free cores unknown here)"

    def _update(self, free: float | None) -> None:
        if free is not None:
            self.current = threads_for(free, max_threads())

    def next_epoch(self) -> int:
        """The thread count for the epoch about to run."""
        if self.free is not None:
            self._update(self.free.sample())
        self.used[self.current] = self.used.get(self.current, 0) + 1
        return self.current
