"""gpu_check's time budget (``--max-seconds``): what fits, what is skipped and why, as the run goes.

    Budget(seconds, clock)            seconds left of a budget counted from its creation (unlimited: None)
    Plan(workloads, entries)          every (workload, entry) pair and what became of it: timed, skipped
                                      with the reason, failed, or not reached (the run stopped first)
    estimated_cost(epoch_s, ...)      seconds to compile, train and time one entry
    choose(costs, seconds, rank)      the entries that fit, by rank then cheapest first, and why not the others
    trim_rounds(entries, ...)         the timing rounds cut to the budget: phases first, then entries

An entry is a CPU or peer baseline ("numpy", "numba_cpu", "torch") or a CUDA version ("numba_cuda v3").
Its cost before it has run is an estimate: a CUDA version's napkin prediction times PLAN_SLACK (the
model is a lower bound) or, once that version has been timed on an earlier workload, times its own
measured/predicted ratio there; a CPU baseline's epoch is its FLOPs at CPU_SHARE of NumPy's measured
matmul rate; a GPU peer's at GPU_PEER_SHARE of the FMA peak. After an entry has trained, its rounds are
costed from its measured epoch, and ``measuring.run_rounds`` stops early when the next round would not fit.
"""
from __future__ import annotations

import math
import time

PLAN_SLACK = 3.0          # a CUDA version not yet timed: 3x its napkin prediction
CPU_SHARE = 0.1           # a CPU baseline's epoch: its FLOPs at 10% of NumPy's matmul rate
GPU_PEER_SHARE = 0.05     # PyTorch on the GPU: its FLOPs at 5% of the FMA peak ...
GPU_PEER_MINIBATCH_S = 2e-3   # ... and at least 2 ms a minibatch (Python and launches)
COMPILE_ALLOWANCE_S = {"numba_cpu": 90.0, "numba_cuda": 10.0, "torch": 10.0}   # first use; CUDA's kernels were
                                                                               # compiled by the validation
MARGIN_S = 5.0            # kept free for writing the results files


class Budget:
    """Seconds left of ``seconds`` counted from now on ``clock``; unlimited when ``seconds`` is None."""

    def __init__(self, seconds: float | None, clock=time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.start = clock()

    @property
    def limited(self) -> bool:
        return self.seconds is not None

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        """Seconds left, less MARGIN_S for writing the files; infinite without a limit."""
        return math.inf if self.seconds is None else self.seconds - self.elapsed() - MARGIN_S

    def fits(self, seconds: float) -> bool:
        return seconds <= self.left()


class Plan:
    """What became of every (workload, entry) pair: "not reached" until the run decides."""

    def __init__(self, workloads: list[str], entries: list[str]):
        self.items = {(w, e): {"workload": w, "entry": e, "status": "not reached", "reason": None,
                               "estimated_seconds": None, "median_epoch_seconds": None}
                      for w in workloads for e in entries}

    def skip(self, workload: str, entry: str, reason: str, estimate: float | None = None) -> None:
        self.items[workload, entry].update(status="skipped", reason=reason, estimated_seconds=estimate)
        print(f"{workload:6s} {entry:14s} skipped: {reason}", flush=True)

    def timed(self, workload: str, entry: str, estimate: float | None, median_epoch_seconds: float) -> None:
        self.items[workload, entry].update(status="timed", estimated_seconds=estimate,
                                           median_epoch_seconds=median_epoch_seconds)

    def failed(self, workload: str, entry: str, reason: str) -> None:
        self.items[workload, entry].update(status="failed", reason=reason)

    def skipped(self) -> list[dict]:
        return [item for item in self.items.values() if item["status"] == "skipped"]

    def record(self, budget: Budget) -> dict:
        """The results files' ``budget`` entry (reports/resultfiles.py)."""
        return {"max_seconds": budget.seconds, "elapsed_seconds": budget.elapsed(),
                "items": list(self.items.values())}

    def summary(self, budget: Budget) -> str:
        """One line: the budget used and how many pairs were timed, skipped and not reached."""
        counts = {}
        for item in self.items.values():
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        used = (f"{budget.elapsed():.0f} s of the {budget.seconds:.0f} s budget used" if budget.limited
                else f"{budget.elapsed():.0f} s, no budget")
        return f"gpu_check: {used}; " + ", ".join(f"{n} {status}" for status, n in counts.items())


def estimated_cost(epoch_seconds: float, training_epochs: int, repeats: int, phases: bool,
                   compile_seconds: float = 0.0) -> float:
    """Compile, the training run and ``repeats`` rounds (a round with phases costs about two epochs, as
    measuring.timed_entry counts it) of one entry whose epoch takes ``epoch_seconds``."""
    return compile_seconds + training_epochs * epoch_seconds + repeats * epoch_seconds * (2 if phases else 1)


def choose(costs: dict[str, float], seconds: float, rank=lambda entry: 0) -> tuple[list[str], dict[str, str]]:
    """The entries whose costs fit in ``seconds`` together, taken by ``rank(entry)`` (lowest first: what the run
    is for), and cheapest first within a rank (so that one slow entry does not crowd out several fast ones);
    for each other entry the reason it does not fit."""
    chosen, reasons, used = [], {}, 0.0
    for entry in sorted(costs, key=lambda e: (rank(e), costs[e])):
        if used + costs[entry] <= seconds:
            chosen.append(entry)
            used += costs[entry]
        else:
            reasons[entry] = (f"needs about {costs[entry]:.0f} s to train and time; "
                              f"{max(seconds - used, 0.0):.0f} s of the budget are left for it")
    return [entry for entry in costs if entry in chosen], reasons


def trim_rounds(entries: list, repeats: int, seconds: float) -> tuple[list, list, bool]:
    """The timed entries whose ``repeats`` rounds fit in ``seconds``: phases are dropped first (every entry
    then times full epochs only), then the costliest entries until one round fits. Returns (kept, dropped,
    phases dropped). ``entries`` are measuring.Timed (``expected_seconds`` is one round's cost)."""
    kept = list(entries)
    dropped_phases = False
    if sum(e.expected_seconds for e in kept) * repeats > seconds and any(e.phases for e in kept):
        for entry in kept:
            if entry.phases:
                entry.phases, entry.expected_seconds = False, entry.expected_seconds / 2
        dropped_phases = True
    dropped = []
    while kept and sum(e.expected_seconds for e in kept) > seconds:
        costliest = max(kept, key=lambda e: e.expected_seconds)
        kept.remove(costliest)
        dropped.append(costliest)
    return kept, dropped, dropped_phases
