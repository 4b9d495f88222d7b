"""The measuring home's arithmetic (reports/measuring.py) on hand-made timings: no clocks, no training.

Parallel efficiency, Amdahl's serial fraction, the phase breakdown, the paired speedup, the noise warning.
"""
from __future__ import annotations

import numpy as np
import pytest

from parallel_lstm.reports import console, measuring


def test_parallel_efficiency_by_hand():
    assert measuring.parallel_efficiency(8.0, 2.5, 4) == 0.8        # 8 / (4 * 2.5)
    assert measuring.parallel_efficiency(6.0, 2.0, 2) == 1.5        # superlinear: more cache on two cores
    assert measuring.paired([8.0, 9.0], [2.5, 3.0], [4, 3]) == [0.8, 1.0]
    assert measuring.paired([8.0, 9.0], [2.5, 3.0], [None, 3]) == [1.0]    # a round without a count is left out


@pytest.mark.parametrize("threads, seconds, mode, expected", [
    ([1, 2, 4], [10.0, 6.0, 4.0], "strong", 0.2),             # 6 = 10 (0.2 + 0.8/2), 4 = 10 (0.2 + 0.8/4)
    ([1, 2, 4], [8.0, 5.0, 3.0], "strong", 10 / 52),           # a = 8(1-1/p) = 4, 6; y = T - 8/p = 1, 1
    ([1, 2], [10.0, 5.0], "strong", 0.0),                      # perfect scaling
    ([1, 2], [10.0, 3.0], "strong", 0.0),                      # superlinear: s < 0 clipped to 0
    ([1, 2], [10.0, 20.0], "strong", 1.0),                     # slower on two threads: s > 1 clipped to 1
    ([1, 2, 4], [10.0, 12.0, 16.0], "weak", 0.2),              # 12 = 10 (1 + 0.2), 16 = 10 (1 + 3 * 0.2)
    ([2, 4], [6.0, 4.0], "strong", None),                      # no one-thread time
    ([1], [10.0], "strong", None),                             # nothing to fit
])
def test_serial_fraction_by_hand(threads, seconds, mode, expected):
    fitted = measuring.serial_fraction(threads, seconds, mode)
    assert fitted == (None if expected is None else pytest.approx(expected))


def test_scaling_record_pairs_the_rounds():
    rounds = {"cpu@1": {"update": [10.0, 12.0, 11.0]}, "cpu@2": {"update": [5.0, 8.0, 5.5]}}
    record = measuring.scaling_record(rounds, ["cpu", "absent"], [1, 2], "strong")
    assert set(record) == {"cpu"}
    cpu = record["cpu"]
    assert cpu["median_seconds"] == [11.0, 5.5] and cpu["q1_seconds"] == [10.5, 5.25]
    assert cpu["speedup_vs_1"] == [1.0, 2.0]                   # median of 10/5, 12/8, 11/5.5
    assert cpu["parallel_efficiency"] == [1.0, 1.0]
    assert cpu["serial_fraction"] == pytest.approx(0.0)
    weak = measuring.scaling_record(rounds, ["cpu"], [1, 2], "weak")["cpu"]
    assert weak["parallel_efficiency"] == [1.0, 2.0] and weak["speedup_vs_1"] == [1.0, 4.0]


def test_phases_are_paired_differences_that_add_up_to_the_epoch():
    forward = [1.0, 1.1, 0.9, 1.0, 1.2]
    forward_backward = [3.0, 3.2, 2.9, 3.1, 3.2]
    full = [3.5, 3.6, 3.5, 3.6, 3.7]
    b = measuring.phase_breakdown(forward, forward_backward, full)
    assert b["forward_seconds"] == 1.0 and b["forward_noise_seconds"] == pytest.approx(0.1)
    assert b["backward_seconds"] == pytest.approx(2.0)         # differences 2.0, 2.1, 2.0, 2.1, 2.0
    assert b["update_seconds"] == pytest.approx(0.5)           # differences 0.5, 0.4, 0.6, 0.5, 0.5
    assert b["within_noise"] == [] and b["epoch_seconds"] == 3.6 and b["repeats"] == 5
    noise = b["epoch_noise_seconds"] + sum(b[f"{p}_noise_seconds"] for p in ("forward", "backward", "update"))
    assert b["sum_seconds"] == pytest.approx(3.5)
    assert abs(b["sum_seconds"] - b["epoch_seconds"]) <= noise


def test_a_phase_within_its_noise_is_none_not_zero_or_negative():
    forward = [2.0, 1.0, 2.2, 1.1, 2.1]                        # a noisy machine: forward swings by 1 s
    forward_backward = [3.0, 2.0, 3.2, 2.1, 3.1]
    full = [2.9, 2.1, 3.1, 2.2, 3.1]                           # the update is lost in the noise (even negative)
    b = measuring.phase_breakdown(forward, forward_backward, full)
    assert b["forward_seconds"] == 2.0 and b["backward_seconds"] == pytest.approx(1.0)
    assert b["update_seconds"] is None and b["within_noise"] == ["update"]
    assert b["sum_seconds"] == pytest.approx(3.0)              # the phases shown
    b = measuring.phase_breakdown([1.0, 3.0, 1.0, 3.0], [1.1, 2.9, 1.2, 2.8], [4.0, 4.0, 4.0, 4.0])
    assert b["backward_seconds"] is None                        # forward alone reaches the full epoch


def test_apply_rounds_fills_speedup_and_efficiency_from_paired_rounds():
    results = {name: {"is_device": False, "threads": None, **dict.fromkeys(measuring.ROUND_FIELDS)}
               for name in ("numpy", "cpu")}
    rounds = {"numpy": {"update": [4.0, 6.0, 5.0], "forward": [], "threads": [2, 2, 2]},
              "cpu": {"update": [1.0, 2.0, 1.0], "forward": [], "threads": [2, 1, 2]},
              "cpu@1": {"update": [1.6, 2.2, 1.8], "forward": [], "threads": [1, 1, 1]}}
    measuring.apply_rounds(results, rounds)
    cpu = results["cpu"]
    assert cpu["median_epoch_seconds"] == 1.0 and cpu["timing_rounds"] == 3 and cpu["threads"] == 2
    assert cpu["speedup"] == 4.0 and cpu["speedup_spread"]["min"] == 3.0    # 4/1, 6/2, 5/1
    assert cpu["reference_blas_threads"] == 2
    # each round with its own thread count: 1.6/(2*1), 2.2/(1*2), 1.8/(2*1)
    assert cpu["parallel_efficiency"] == pytest.approx(0.9)
    assert results["numpy"]["speedup"] == 1.0 and results["numpy"]["parallel_efficiency"] is None
    assert cpu["breakdown"] is None


QUIET = {"load_1min": 0.3, "cores": 2, "others_cores": 0.1, "window_s": 0.5}


def run_with(*seconds):
    return {f"b{k}": {"round_seconds": list(s), "median_epoch_seconds": sorted(s)[len(s) // 2]}
            for k, s in enumerate(seconds)}


def test_results_are_labelled_by_sweep_point():
    runs = [{"label": "main", "sweep_value": None, "results": {"numpy": 1}},
            {"label": "hidden=8", "sweep_value": 8, "results": {"numpy": 2, "numba_cpu": 3}}]
    assert measuring.labelled_results(runs) == {"numpy": 1, "numpy at hidden=8": 2, "numba_cpu at hidden=8": 3}


def test_noise_report_is_silent_on_a_quiet_machine_with_tight_rounds():
    noise = measuring.noise_report({"before": QUIET, "during": {"others_cores": 0.2, "window_s": 9.0},
                                    "after": QUIET}, run_with([1.0, 1.01, 1.02, 0.99, 1.0]))
    assert noise["warning"] is None and noise["busy"] is False and noise["wide_spread"] == {}


@pytest.mark.parametrize("change, expected", [
    ({"during": {"others_cores": 0.9, "window_s": 9.0}}, "other processes used up to 0.9 of 2 cores"),
    ({"before": dict(QUIET, load_1min=2.5)}, "the load average was 2.5 on 2 cores before the run"),
])
def test_noise_report_warns_about_a_busy_machine_in_one_line(change, expected):
    noise = measuring.noise_report({"before": QUIET, "after": QUIET, **change}, run_with([1.0, 1.0, 1.0]))
    assert noise["busy"] is True and expected in noise["warning"] and "\n" not in noise["warning"]


def test_noise_report_warns_about_a_wide_spread():
    noise = measuring.noise_report({"before": QUIET, "after": QUIET},
                                   run_with([1.0, 1.0, 1.0], [1.0, 2.0, 1.5, 1.2, 3.0]))
    assert noise["busy"] is False and set(noise["wide_spread"]) == {"b1"}
    assert noise["wide_spread"]["b1"] == pytest.approx((2.0 - 1.2) / 1.5)
    assert "wide spread" in noise["warning"] and "b1 53%" in noise["warning"]


class LoggingTrainer:
    """Records every run_epoch call as (name, phase); reports a thread count like numba_cpu's trainer."""

    def __init__(self, name, log, threads=None):
        self.name, self.log, self.stats = name, log, {} if threads is None else {"threads": threads}

    def run_epoch(self, order, upto="update"):
        self.log.append((self.name, upto))
        return np.zeros(1), 0.0

    def host_params(self):
        self.log.append((self.name, "host_params"))


def test_rounds_rotate_the_backends_and_settle_short_epochs():
    log = []
    orders = np.zeros((2, 3), dtype=np.int64)
    entries = [measuring.Timed("a", LoggingTrainer("a", log, threads=2), orders, settle=True),
               measuring.Timed("b", LoggingTrainer("b", log), orders, threads=1, phases=True)]
    rounds = measuring.run_rounds(entries, 2, console.Progress(False))
    phases = [("b", "forward"), ("b", "backward"), ("b", "update")]
    assert log == ([("a", "forward"), ("a", "update")] + phases          # round 1: a first, its untimed forward
                   + phases + [("a", "forward"), ("a", "update")]        # round 2: b first
                   + [("a", "host_params"), ("b", "host_params")])
    assert len(rounds["a"]["update"]) == 2 and rounds["a"]["forward"] == [] and rounds["a"]["threads"] == [2, 2]
    assert [len(rounds["b"][phase]) for phase in ("forward", "backward", "update")] == [2, 2, 2]
    assert rounds["b"]["threads"] == [1, 1]
