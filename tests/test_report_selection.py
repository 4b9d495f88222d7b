"""Which results files the report uses: a folder of synthetic results files, never a real run."""
import numpy as np
import pytest

from parallel_lstm.lstm_numpy import UserError
from parallel_lstm.reports.selection import select
from parallel_lstm.reports.thread_scaling import amdahl_serial_fraction, amdahl_speedup, from_pair, from_scaling_field
from results_factory import document, sweep_document, write

DAY = "2026-11-22T"


def test_the_newest_complete_run_of_each_workload_and_dtype_wins(tmp_path):
    write(tmp_path, "old-light", document("light", created=DAY + "09:00:00+00:00"))
    write(tmp_path, "new-light", document("light", created=DAY + "10:00:00+00:00"))
    write(tmp_path, "light-f32", document("light", "float32", created=DAY + "08:00:00+00:00"))
    chosen = select([str(tmp_path)])
    assert chosen.main[("light", "float64")]["_file"] == "new-light.json"
    assert chosen.main[("light", "float32")]["_file"] == "light-f32.json"
    assert "older than `new-light.json`" in chosen.skipped["old-light.json"]
    assert set(chosen.used) == {"new-light.json", "light-f32.json"}


@pytest.mark.parametrize("bad, reason", [
    (dict(exit_code=3), "a failed run (exit status 3)"),
    (dict(exit_code=None), "a failed run (exit status None)"),
])
def test_a_failed_run_is_skipped_and_the_older_complete_one_used(tmp_path, bad, reason):
    write(tmp_path, "complete", document("seed", created=DAY + "09:00:00+00:00"))
    write(tmp_path, "failed", document("seed", created=DAY + "11:00:00+00:00", **bad))
    chosen = select([str(tmp_path)])
    assert chosen.main[("seed", "float64")]["_file"] == "complete.json"
    assert chosen.skipped["failed.json"] == reason


def test_a_partial_run_missing_a_selected_backend_is_skipped(tmp_path):
    partial = document("heavy", created=DAY + "11:00:00+00:00")
    partial["config"]["backends"].append("numba_cuda")
    partial["runs"][0]["failed"] = {"numba_cuda": "Traceback ..."}
    write(tmp_path, "partial", partial)
    chosen = select([str(tmp_path)])
    assert chosen.main == {}
    assert chosen.skipped["partial.json"] == "partial: numba_cuda has no results (it raised)"


def test_simulator_and_data_runs_are_used_only_when_asked_for(tmp_path):
    write(tmp_path, "real", document("light", created=DAY + "09:00:00+00:00"))
    write(tmp_path, "sim", document("light", created=DAY + "10:00:00+00:00", simulator=True,
                                    times={"numpy": 0.01, "numba_cuda": 0.5}))
    write(tmp_path, "mine", document("light", created=DAY + "11:00:00+00:00", data="/home/me/my.csv"))
    plain = select([str(tmp_path)])
    assert plain.main[("light", "float64")]["_file"] == "real.json"
    assert "CUDA simulator" in plain.skipped["sim.json"] and "--include-simulator" in plain.skipped["sim.json"]
    assert "--data my.csv" in plain.skipped["mine.json"] and "--include-data" in plain.skipped["mine.json"]
    assert select([str(tmp_path)], include_simulator=True).main[("light", "float64")]["_file"] == "sim.json"
    assert select([str(tmp_path)], include_simulator=True,
                  include_data=True).main[("light", "float64")]["_file"] == "mine.json"


def test_a_simulator_result_marks_the_run_even_when_the_config_does_not(tmp_path):
    doc = document("light", times={"numpy": 0.01, "numba_cuda": 0.5})
    doc["runs"][0]["results"]["numba_cuda"]["simulator"] = True
    write(tmp_path, "sim", doc)
    assert "CUDA simulator" in select([str(tmp_path)]).skipped["sim.json"]


def test_damaged_files_are_named_with_one_reason_and_never_raise(tmp_path):
    write(tmp_path, "good", document("light"))
    (tmp_path / "truncated.json").write_text('{"schema": "parallel-lstm/run_comparison/1", "runs": [')
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "other.json").write_text('{"schema": "something/else"}')
    (tmp_path / "no-runs.json").write_text('{"schema": "parallel-lstm/run_comparison/1", '
                                           '"config": {"workload": "light", "dtype": "float64"}, "runs": []}')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    chosen = select([str(tmp_path)])
    assert chosen.main[("light", "float64")]["_file"] == "good.json"
    assert chosen.skipped["truncated.json"].startswith("not valid JSON (truncated or damaged")
    assert chosen.skipped["list.json"] == "not a results file: the JSON is a list, not an object"
    assert "not a results file of schema" in chosen.skipped["other.json"]
    assert "holds no runs" in chosen.skipped["no-runs.json"]
    assert chosen.skipped["binary.json"].startswith("cannot be read")
    assert sorted(chosen.damaged) == ["binary.json", "list.json", "truncated.json"]
    assert all("\n" not in reason for reason in chosen.skipped.values())


def test_a_one_thread_run_pairs_only_with_a_run_of_the_same_machine_and_day(tmp_path):
    write(tmp_path, "many", document("heavy", created=DAY + "10:00:00+00:00"))
    write(tmp_path, "one-yesterday", document("heavy", created="2026-11-21T10:00:00+00:00", threads=1))
    write(tmp_path, "one-elsewhere", document("heavy", created=DAY + "10:30:00+00:00", threads=1, host="other"))
    write(tmp_path, "one-other-cpu", document("heavy", created=DAY + "10:40:00+00:00", threads=1, cpu="Other CPU"))
    chosen = select([str(tmp_path)])
    assert chosen.pairs == {}
    for name in ("one-yesterday", "one-elsewhere", "one-other-cpu"):
        assert "same machine and day" in chosen.skipped[f"{name}.json"]

    write(tmp_path, "one-today", document("heavy", created=DAY + "09:00:00+00:00", threads=1))
    many, one = select([str(tmp_path)]).pairs[("heavy", "float64")]
    assert (many["_file"], one["_file"]) == ("many.json", "one-today.json")


def test_cpu_bench_files_pair_with_each_other_and_are_skipped_together(tmp_path):
    bench = dict(tool="reports.cpu_bench", created=DAY + "12:00:00+00:00")
    write(tmp_path, "x_heavy-cpu_bench", document("heavy", **bench))
    write(tmp_path, "x_heavy-cpu_bench-1thread", document("heavy", threads=1, **bench))
    write(tmp_path, "harness", document("heavy", created=DAY + "12:30:00+00:00"))
    chosen = select([str(tmp_path)])
    many, one = chosen.pairs[("heavy", "float64")]
    assert (many["_file"], one["_file"]) == ("x_heavy-cpu_bench.json", "x_heavy-cpu_bench-1thread.json")
    assert chosen.main[("heavy", "float64")]["_file"] == "harness.json"     # newer, but not its partner

    write(tmp_path, "x_heavy-cpu_bench-1thread", document("heavy", threads=1, exit_code=3, **bench))
    chosen = select([str(tmp_path)])
    assert chosen.pairs == {}
    assert chosen.skipped["x_heavy-cpu_bench-1thread.json"] == "a failed run (exit status 3)"
    assert "partner" in chosen.skipped["x_heavy-cpu_bench.json"]


def test_files_named_by_hand_are_used_as_given(tmp_path):
    sim = write(tmp_path, "sim", document("light", simulator=True, times={"numpy": 0.01, "numba_cuda": 0.5}))
    write(tmp_path, "newer", document("light", created=DAY + "23:00:00+00:00"))
    chosen = select([sim])
    assert chosen.main[("light", "float64")]["_file"] == "sim.json"
    assert "named on the command line" in chosen.used["sim.json"][0]
    assert "newer.json" not in chosen.used and "newer.json" not in chosen.skipped
    with pytest.raises(UserError, match="does not exist"):
        select([str(tmp_path / "missing.json")])


def test_sweeps_keep_one_file_per_workload_dtype_and_parameter(tmp_path):
    def times(v):
        return {"numpy": 1e-4 * v, "numba_cpu": 1e-5 * v}
    write(tmp_path, "hidden-old", sweep_document("light", "hidden", [8, 16], times, created=DAY + "09:00:00+00:00"))
    write(tmp_path, "hidden-new", sweep_document("light", "hidden", [8, 16, 32], times, created=DAY + "10:00:00+00:00"))
    write(tmp_path, "samples", sweep_document("heavy", "samples", [64, 128], times))
    write(tmp_path, "threads", sweep_document("heavy", "threads", [1, 2], times))
    chosen = select([str(tmp_path)])
    assert {k: d["_file"] for k, d in chosen.sweeps.items()} == {
        ("light", "float64", "hidden"): "hidden-new.json", ("heavy", "float64", "samples"): "samples.json"}
    assert chosen.scaling[("heavy", "float64")]["_file"] == "threads.json"
    assert "older than `hidden-new.json`" in chosen.skipped["hidden-old.json"]


def test_amdahl_fit_recovers_the_serial_fraction():
    threads = [1, 2, 4, 8, 16]
    assert amdahl_serial_fraction(threads, amdahl_speedup(0.1, threads)) == pytest.approx(0.1)
    assert amdahl_serial_fraction(threads, list(map(float, threads))) == pytest.approx(0.0)
    assert amdahl_serial_fraction([1], [1.0]) is None


def test_scaling_entries_that_do_not_hold_together_are_left_out():
    doc = document("heavy", scaling={
        "numba_cpu": {"threads": [4, 1, 2], "median_seconds": [0.3, 1.0, 0.55], "q1_seconds": [0.29, 0.95, 0.5],
                      "q3_seconds": [0.31, 1.05, 0.6], "serial_fraction": None, "mode": "strong"},
        "broken": {"threads": [1, 2], "median_seconds": [1.0]},
        "text": "not an entry"})
    [series] = from_scaling_field(doc)
    assert series.threads == [1, 2, 4] and series.median == [1.0, 0.55, 0.3]
    assert series.efficiency == pytest.approx([1.0, 1.0 / (2 * 0.55), 1.0 / (4 * 0.3)])
    expected = amdahl_serial_fraction([1, 2, 4], [1.0, 1 / 0.55, 1 / 0.3])
    assert series.serial_fraction == pytest.approx(expected) and 0 < expected < 0.2


def test_a_pair_gives_the_efficiency_of_the_same_backend():
    many = document("heavy", times={"numpy": 3.0, "numba_cpu": 1.25}, threads=4)
    one = document("heavy", times={"numpy": 3.0, "numba_cpu": 4.0}, threads=1)
    [series] = from_pair(many, one, ["numba_cpu"])
    assert series.threads == [1, 4]
    assert series.efficiency[1] == pytest.approx(4.0 / (4 * 1.25))
    assert np.isclose(series.speedup[1], 3.2)
