"""numba_cpu's thread count: the user's choice, else the cores other processes leave free (lstm_numba_cpu/threads.py).

The machine's counters are replaced by fakes, so these tests know exactly how busy the "machine" is.
"""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np
import pytest

from parallel_lstm import lstm_numba_cpu as nb
from parallel_lstm import lstm_numpy as ref
from parallel_lstm.data import make_workload
from parallel_lstm.lstm_numba_cpu import threads as th


class FakeMachine:
    """/proc/stat and the clocks of a machine with ``cores`` CPUs where other work keeps ``others`` cores busy
    and this process uses ``ours`` cores; every reading advances the clock by ``step`` seconds."""

    def __init__(self, monkeypatch, cores=2, others=1.0, ours=1.0, step=0.25, hz=100):
        self.wall = self.cpu = 0.0
        self.cores, self.others, self.ours, self.step, self.hz = cores, others, ours, step, hz
        monkeypatch.setattr(th.os, "cpu_count", lambda: self.cores)
        monkeypatch.setattr(th.os, "sysconf", lambda name: self.hz)
        monkeypatch.setattr(th.time, "perf_counter", self.perf_counter)
        monkeypatch.setattr(th.time, "process_time", lambda: self.cpu)
        monkeypatch.setattr(th.time, "sleep", lambda s: None)
        monkeypatch.setattr(th, "machine_ticks", self.ticks)

    def perf_counter(self):
        self.wall += self.step
        self.cpu += self.ours * self.step
        return self.wall

    def ticks(self):
        busy = round((self.others * self.wall + self.cpu) * self.hz)
        return busy, round(self.cores * self.wall * self.hz)


@pytest.mark.parametrize("free, limit, expected", [
    (2.0, 2, 2), (1.75, 2, 2), (1.69, 2, 1), (1.0, 2, 1), (0.1, 2, 1), (-0.5, 4, 1), (15.9, 8, 8), (3.7, 16, 4)])
def test_threads_for_rounds_down_with_slack(free, limit, expected):
    assert th.threads_for(free, limit) == expected


@pytest.mark.parametrize("others, expected", [(0.0, 2), (0.2, 2), (1.0, 1), (1.9, 1)])
def test_free_cores_subtracts_this_process(monkeypatch, others, expected):
    FakeMachine(monkeypatch, others=others, ours=2.0)
    free = th.FreeCores()
    assert free.sample() == pytest.approx(2 - others, abs=0.05)
    assert th.threads_for(free.sample(), 2) == expected


def test_free_cores_waits_for_a_long_enough_window(monkeypatch):
    FakeMachine(monkeypatch, step=0.01)
    free = th.FreeCores()
    assert free.sample() is None           # 10 ms: too short to count ticks
    assert free.sample(min_window=0.0) is not None


def test_free_cores_unknown_without_counters(monkeypatch):
    monkeypatch.setattr(th, "machine_ticks", lambda: None)
    policy = th.ThreadPolicy(None)
    assert policy.mode.startswith("all") and policy.next_epoch() == numba.config.NUMBA_NUM_THREADS


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_policy_follows_the_machine_and_counts_epochs(monkeypatch):
    machine = FakeMachine(monkeypatch, others=1.0, ours=1.0)
    policy = th.ThreadPolicy(None)
    assert policy.mode == "free cores"
    assert policy.next_epoch() == 1        # a neighbour holds one of two cores
    machine.others = 0.0
    assert policy.next_epoch() == 2        # it has gone
    assert policy.used == {1: 1, 2: 1}


def test_explicit_threads_are_obeyed_whatever_the_load(monkeypatch):
    FakeMachine(monkeypatch, others=1.9)
    policy = th.ThreadPolicy(2)
    assert policy.mode == "fixed" and [policy.next_epoch() for _ in range(3)] == [2, 2, 2]


def test_too_many_threads_is_one_sentence():
    with pytest.raises(ref.UserError, match="NUMBA_NUM_THREADS"):
        th.ThreadPolicy(numba.config.NUMBA_NUM_THREADS + 1)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_training_records_the_threads_it_used_and_matches_fixed_threads(monkeypatch):
    """Thread counts that change between epochs change no bit of the results."""
    w = make_workload("seed", hidden=6, epochs=3)
    params = ref.init_params(*w.sizes, seed=0)
    counts = iter([1, 2, 1, 2, 1, 2])
    monkeypatch.setattr(th.ThreadPolicy, "next_epoch", lambda self: next(counts))
    varying = nb.train(params, w.data, w.config)
    monkeypatch.undo()
    fixed = nb.train(params, w.data, replace(w.config, threads=2))
    assert varying.train_loss == fixed.train_loss and varying.valid_loss == fixed.valid_loss
    for (name, a), (_, b) in zip(varying.params.items(), fixed.params.items()):
        assert np.array_equal(a, b), name
    assert fixed.stats["threads_mode"] == "fixed" and fixed.stats["threads_used"] == {2: 3}


def test_busy_check_reports_both_choices(capsys):
    """The busy-machine check runs end to end on a tiny shape (its figures are not asserted: they are timings)."""
    from parallel_lstm.reports import busy_check
    assert busy_check.main(["--trials", "1", "--epochs", "2", "--hidden", "4"]) == 0
    out = capsys.readouterr().out
    assert "quiet, 1 thread" in out and "default with a busy neighbour: typical" in out
    row = out.splitlines()[-2].split()
    assert row[0] == "1" and float(row[1]) > 0 and float(row[4]) > 0
