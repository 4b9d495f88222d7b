"""The harness (run_comparison.py): help, bad input, results files, the verdict, sweeps, progress, the training
options (--clip-norm, --save-params, --init-params) and the concise loss log.

Most runs here use the numpy reference or fake backends put into the registry by the test, on the seed
workload (or light with H=4) for one or two epochs, with the reference matmul shrunk, so the file stays
fast; the thread sweep and --clip-norm also run numba_cpu.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
import sys
import types

import numpy as np
import pytest

from parallel_lstm import lstm_numpy
from parallel_lstm import run_comparison
from parallel_lstm.lstm_numpy.flops import training_flops
from parallel_lstm.data import make_workload
from parallel_lstm.lstm_numpy.backends import BACKENDS
from parallel_lstm.lstm_numpy.errors import NonFiniteLossError
from parallel_lstm.reports import console, machine, measuring, resultfiles, torch_baseline
from parallel_lstm.reports.census import PEERS, backend_status, select_backends
from parallel_lstm.reports.sweep import fit_slope

EVERY_OPTION = ("--workload", "--backends", "--cuda-simulator", "--epochs", "--lr", "--batch-size", "--hidden",
                "--seq-len", "--samples", "--dtype", "--threads", "--blas-threads", "--repeats", "--no-one-thread",
                "--weak", "--seed", "--kernel-version", "--data", "--column", "--sweep", "--out", "--quiet",
                "--clip-norm", "--init-params", "--save-params", "--full-log")


@pytest.fixture(autouse=True)
def fast_harness(monkeypatch):
    """A small reference matmul, short load readings and 3 timing rounds: the numbers are not what these tests
    check."""
    monkeypatch.setattr(run_comparison, "MATMUL_N", 64)
    monkeypatch.setattr(run_comparison, "DEFAULT_REPEATS", 3)
    monkeypatch.setattr(machine, "LOAD_WINDOW_S", 0.01)


def add_fake_backend(monkeypatch, name, *, perturb=0.0, reason=None, stats=None, describe=None, train=None):
    """Register a backend that trains with the reference, then scales its training losses by (1 + perturb)."""
    module = types.ModuleType(f"fake_backend_{name}")

    def fake_train(params, data, config, progress=None):
        history = lstm_numpy.train(params, data, config, progress)
        history.train_loss = [loss * (1.0 + perturb) for loss in history.train_loss]
        history.stats = dict(stats or {})
        return history

    module.train = train or fake_train
    module.make_trainer = lstm_numpy.make_trainer
    module.is_available = lambda: reason
    module.describe = lambda: dict(describe or {"backend": name})
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(BACKENDS, name, module.__name__)


def run(argv, out_dir=None):
    argv = list(argv) + (["--out", str(out_dir)] if out_dir is not None else [])
    return run_comparison.main(argv)


def results_in(folder, suffix):
    return sorted(p for p in folder.iterdir() if p.suffix == suffix)


def test_help_lists_every_option_with_its_default(capsys):
    assert run_comparison.main(["--help"]) == 0
    text = capsys.readouterr().out
    for option in EVERY_OPTION:
        assert option in text
    for action in run_comparison.build_parser()._actions:
        if action.dest != "help":
            assert "default" in action.help, action.dest
    assert "exit codes" in text and "seed" in text


@pytest.fixture
def csv_files(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("v\n" + "\n".join(str(100 + (k % 12) * 3 + k) for k in range(144)) + "\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("v\n1\n2\nthree\n4\n")
    taken = tmp_path / "taken.npz"
    lstm_numpy.save_params(taken, lstm_numpy.init_params(3, 50, 3))      # the seed workload's sizes
    return {"{good}": str(good), "{bad}": str(bad), "{missing}": str(tmp_path / "missing.csv"),
            "{taken}": str(taken), "{new}": str(tmp_path / "new.npz"),
            "{no-folder}": str(tmp_path / "no" / "such" / "folder" / "new.npz")}


BAD_OPTIONS = [
    ["--epochs", "0"], ["--epochs", "-3"], ["--epochs", "two"], ["--lr", "0"], ["--lr", "nan"], ["--lr", "-0.1"],
    ["--batch-size", "0"], ["--hidden", "0"], ["--seq-len", "0"], ["--samples", "-5"], ["--threads", "0"],
    ["--threads", "100000"], ["--seed", "-1"], ["--kernel-version", "0"], ["--dtype", "float16"],
    ["--workload", "huge"], ["--backends", "tensorflow"], ["--backends", ","], ["--no-such-option"],
    ["--data", "{missing}", "--column", "v"], ["--data", "{good}"], ["--column", "v"],
    ["--data", "{good}", "--column", "nope"], ["--data", "{bad}", "--column", "v"],
    ["--workload", "seed", "--samples", "100"], ["--workload", "seed", "--seq-len", "5"],
    ["--workload", "light", "--seq-len", "200"], ["--workload", "heavy", "--data", "{good}", "--column", "v"],
    ["--sweep", "hidden"], ["--sweep", "width=1,2"], ["--sweep", "hidden=8"], ["--sweep", "hidden=8,x"],
    ["--sweep", "hidden=8,0"], ["--sweep", "hidden=8,16", "--hidden", "8"], ["--sweep", "samples=8,16"],
    ["--sweep", "seq-len=4,8"], ["--out", "{good}"], ["--backends", "unavailable"],
    ["--repeats", "0"], ["--blas-threads", "0"], ["--blas-threads", "100000"], ["--sweep", "threads=1,100000"],
    ["--weak"], ["--sweep", "threads=1,2", "--threads", "1"], ["--sweep", "threads=1,2", "--weak"],
    ["--clip-norm", "0"], ["--clip-norm", "-1"], ["--clip-norm", "inf"], ["--clip-norm", "x"],
    ["--save-params", "{good}"], ["--save-params", "{taken}"], ["--save-params", "{no-folder}"],
    ["--save-params", "{new}", "--sweep", "hidden=4,8"], ["--save-params", "{new}", "--epochs", "0"],
    ["--init-params", "{missing}"], ["--init-params", "{good}"], ["--init-params", "{taken}", "--hidden", "8"],
    ["--init-params", "{taken}", "--dtype", "float32"], ["--init-params", "{taken}", "--sweep", "hidden=50,8"],
]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=" ".join)
def test_bad_option_is_one_sentence_exit_2_and_writes_nothing(options, csv_files, tmp_path, monkeypatch, capsys):
    add_fake_backend(monkeypatch, "unavailable", reason="it needs a device this machine lacks")
    options = [csv_files.get(o, o) for o in options]
    out_dir = tmp_path / "results"
    if "--out" not in options:
        options += ["--out", str(out_dir)]
    assert run_comparison.main(options + ["--epochs", "1"] * ("--epochs" not in options)) == 2
    captured = capsys.readouterr()
    message = captured.err.strip()
    assert len(message.splitlines()) == 1 and message.endswith("."), message
    assert "Traceback" not in captured.err
    assert not out_dir.exists()
    assert not (tmp_path / "new.npz").exists() and not (tmp_path / "no").exists()


def test_end_to_end_run_writes_json_and_csv_with_the_machine(tmp_path, capsys):
    assert run(["--backends", "numpy", "--epochs", "2"], tmp_path) == 0
    out = capsys.readouterr().out
    [json_path], [csv_path] = results_in(tmp_path, ".json"), results_in(tmp_path, ".csv")
    assert json_path.stem == csv_path.stem and json_path.stem.endswith("_seed")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]

    document = resultfiles.read_results(json_path)
    machine = document["machine"]
    for key in ("hostname", "cpu_model", "logical_cores", "usable_cores", "numba", "libraries", "cuda_simulator",
                "gpus", "thread_environment"):
        assert key in machine
    assert machine["libraries"]["numpy"] == np.__version__
    assert "threading_layer" in machine["numba"]
    assert document["config"]["workload"] == "seed" and document["config"]["epochs"] == 2
    assert document["config"]["train_config"]["lr"] == 0.1
    assert document["verdict"]["agree"] and document["exit_code"] == 0
    assert document["reference_matmul"]["float64_gflops"] > 0

    [only_run] = document["runs"]
    assert only_run["workload"]["shapes"] == {"N_train": 59, "N_valid": 7, "T": 11, "D": 3, "H": 50, "Y": 3, "B": 7}
    result = only_run["results"]["numpy"]
    workload = make_workload("seed", epochs=2)
    expected = lstm_numpy.train(workload.initial_params(), workload.data, workload.config)
    assert result["train_loss"] == expected.train_loss and result["valid_loss"] == expected.valid_loss
    assert result["compile_seconds"] >= 0
    assert result["speedup"] == 1.0 and result["gflops"] > 0 and result["peak_rss_bytes"] > 0
    assert set(result["breakdown"]) >= {"forward_seconds", "backward_seconds", "update_seconds", "transfer_seconds",
                                        "within_noise", "sum_seconds", "epoch_seconds"}
    # the timing: 3 interleaved rounds (the default here), their median and spread; numpy on its BLAS's threads
    assert result["timing_rounds"] == 3 == len(result["round_seconds"]) == result["breakdown"]["repeats"]
    assert result["median_epoch_seconds"] == float(np.median(result["round_seconds"])) > 0
    assert result["epoch_spread"]["q1"] <= result["median_epoch_seconds"] <= result["epoch_spread"]["q3"]
    assert result["reference_blas_threads"] == result["threads"] == machine["blas"]["threads"] >= 1
    assert len(result["epoch_seconds"]) == 2                      # the training run's epochs, kept apart
    assert document["config"]["repeats"] == 3 and document["config"]["blas_threads"] is None
    for when in ("before", "during", "after"):
        assert document["load"][when]["window_s"] > 0
    assert set(document["noise"]) >= {"busy", "wide_spread", "warning"}

    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert [float(r["train_loss"]) for r in rows] == expected.train_loss
    assert rows[0]["backend"] == "numpy" and rows[0]["workload"] == "seed" and rows[0]["H"] == "50"

    assert "Loss log" in out and "Timing" in out and "Epoch breakdown" in out
    assert f"{expected.train_loss[1]:.12g}" in out and f"{expected.valid_loss[1]:.12g}" in out
    assert str(json_path) in out


def test_default_out_dir_and_two_runs_never_overwrite(tmp_path, monkeypatch):
    monkeypatch.setattr(run_comparison, "default_out_dir", lambda: tmp_path)
    monkeypatch.setattr(resultfiles, "results_stem", lambda workload, when=None, host=None: f"same_{workload}")
    assert run(["--backends", "numpy", "--epochs", "1", "--quiet"]) == 0
    first = (tmp_path / "same_seed.json").read_text()
    assert run(["--backends", "numpy", "--epochs", "1", "--quiet", "--lr", "0.05"]) == 0
    assert (tmp_path / "same_seed.json").read_text() == first
    second = json.loads((tmp_path / "same_seed-2.json").read_text())
    assert second["config"]["lr"] == 0.05 and (tmp_path / "same_seed-2.csv").exists()


def test_write_results_keeps_an_existing_file(tmp_path):
    (tmp_path / "stem.csv").write_text("an earlier run\n")
    document = {"config": {"dtype": "float64"}, "runs": [], "sweep": None, "x": float("nan")}
    json_path, csv_path = resultfiles.write_results(str(tmp_path), "stem", document)
    assert json_path.endswith("stem-2.json") and csv_path.endswith("stem-2.csv")
    assert (tmp_path / "stem.csv").read_text() == "an earlier run\n"
    assert json.loads((tmp_path / "stem-2.json").read_text())["x"] is None


def test_a_backend_that_disagrees_fails_the_run(tmp_path, monkeypatch, capsys):
    add_fake_backend(monkeypatch, "drifting", perturb=1e-7)
    assert run(["--backends", "drifting", "--epochs", "2"], tmp_path) == 1
    out = capsys.readouterr().out
    verdict = [line for line in out.splitlines() if line.startswith("VERDICT")]
    assert len(verdict) == 1 and "FAIL" in verdict[0] and "drifting epoch 0 train loss" in verdict[0]
    [json_path] = results_in(tmp_path, ".json")
    document = resultfiles.read_results(json_path)
    assert document["exit_code"] == 1 and not document["verdict"]["agree"]
    assert document["runs"][0]["results"]["drifting"]["agrees"] is False
    assert list(document["runs"][0]["results"]) == ["numpy", "drifting"]   # the reference was added


def test_the_tolerance_follows_the_dtype(tmp_path, monkeypatch, capsys):
    """A relative drift of 1e-7 fails float64's 1e-10 (above) but passes float32's 1e-4."""
    add_fake_backend(monkeypatch, "drifting", perturb=1e-7)
    assert run(["--backends", "numpy,drifting", "--epochs", "1", "--dtype", "float32", "--quiet"], tmp_path) == 0
    assert "PASS" in capsys.readouterr().out


def test_agreeing_cpu_and_device_backends(tmp_path, monkeypatch, capsys):
    add_fake_backend(monkeypatch, "cpuish", stats={"threads": 2, "threading_layer": "workqueue"})
    add_fake_backend(monkeypatch, "gpuish", stats={"device": "Fake GPU", "compute_capability": "9.0",
                                                   "launches_per_epoch": 40, "h2d_per_epoch": 0,
                                                   "d2h_per_epoch": 1, "device_memory_bytes": 2**20,
                                                   "kernel_version": 2})
    assert run(["--backends", "cpuish,gpuish", "--epochs", "2"], tmp_path) == 0
    out = capsys.readouterr().out
    assert "VERDICT: PASS" in out and "Fake GPU" in out
    results = resultfiles.read_results(results_in(tmp_path, ".json")[0])["runs"][0]["results"]
    cpu, gpu = results["cpuish"], results["gpuish"]
    # parallel efficiency is the backend's own: its one-thread rounds against its 2-thread rounds, paired
    assert cpu["threads"] == 2 and len(cpu["one_thread_round_seconds"]) == len(cpu["round_seconds"]) == 3
    paired = [one / (2 * many) for one, many in zip(cpu["one_thread_round_seconds"], cpu["round_seconds"])]
    assert cpu["parallel_efficiency"] == pytest.approx(float(np.median(paired)))
    assert gpu["parallel_efficiency"] is None and gpu["one_thread_round_seconds"] is None
    assert gpu["breakdown"]["transfer_seconds"] is not None
    assert results["numpy"]["breakdown"]["transfer_seconds"] is None
    speedups = [ref / own for ref, own in zip(results["numpy"]["round_seconds"], gpu["round_seconds"])]
    assert gpu["speedup"] == pytest.approx(float(np.median(speedups)))


def test_simulator_backends_are_opt_in_and_never_timed(tmp_path, monkeypatch, capsys):
    add_fake_backend(monkeypatch, "simulated", describe={"simulator": True})
    names, census = select_backends(None, use_simulator=False)
    assert "simulated" not in names and "--cuda-simulator" in census["simulated"].skip
    assert "simulated" in select_backends(None, use_simulator=True)[0]
    assert run(["--epochs", "1", "--backends", "simulated"], tmp_path) == 0
    out = capsys.readouterr().out
    assert "no timing claims" in out
    [json_path] = results_in(tmp_path, ".json")
    result = resultfiles.read_results(json_path)["runs"][0]["results"]["simulated"]
    assert result["simulator"] and not result["timed"] and result["median_epoch_seconds"] is None
    assert result["agrees"] is True


def test_default_run_skips_unavailable_backends_with_the_reason(monkeypatch, capsys):
    names, census = select_backends(None, use_simulator=False)
    assert names[0] == "numpy"
    for name, status in census.items():
        assert (name in names) == (status.reason is None and status.skip is None)
    add_fake_backend(monkeypatch, "absent", reason="no such device here")
    names, census = select_backends(None, use_simulator=False)
    assert "absent" not in names and census["absent"].reason == "no such device here"


def test_a_stub_package_is_reported_as_not_implemented(monkeypatch):
    module = types.ModuleType("fake_stub")
    monkeypatch.setitem(sys.modules, "fake_stub", module)
    monkeypatch.setitem(BACKENDS, "stub", "fake_stub")
    status = backend_status("stub")
    assert "does not export" in status.reason and "train" in status.reason


def test_a_diverging_reference_stops_with_a_clear_message(tmp_path, capsys):
    assert run(["--backends", "numpy", "--workload", "light", "--epochs", "2", "--lr", "1e300", "--quiet"],
               tmp_path) == 3
    err = capsys.readouterr().err
    assert "numpy" in err and "epoch 0, minibatch" in err and "not finite" in err
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_a_sweep_of_two_sizes_fits_a_slope(tmp_path, capsys):
    assert run(["--backends", "numpy", "--epochs", "1", "--sweep", "hidden=4,16"], tmp_path) == 0
    out = capsys.readouterr().out
    assert "slope" in out and "VERDICT" in out
    document = resultfiles.read_results(results_in(tmp_path, ".json")[0])
    sweep = document["sweep"]
    assert sweep["param"] == "hidden" and sweep["values"] == [4, 16]
    assert isinstance(sweep["slopes"]["numpy"], float)
    assert [run["workload"]["shapes"]["H"] for run in document["runs"]] == [4, 16]
    assert len(results_in(tmp_path, ".csv")) == 1


def test_fit_slope_recovers_a_power_law():
    assert fit_slope([10, 20, 40], [0.5, 2.0, 8.0]) == pytest.approx(2.0)
    assert fit_slope([10, 20], [None, None]) is None


def test_flop_count_by_hand():
    # T=2, B=3, D=1, H=4, Y=1: gates 2*T*B*4H*(D+H) = 2*2*3*16*5 = 960, head 2*B*H*Y = 24, times 3.
    assert training_flops(2, 3, 1, 4, 1, "regression") == 3 * (960 + 24)
    assert training_flops(2, 3, 1, 4, 1, "classification") == 3 * (960 + 48)


def test_progress_goes_to_stderr_off_a_terminal_and_quiet_silences_it(tmp_path, monkeypatch, capsys):
    """Under pytest stdout and stderr are no terminal, as under nohup or tee."""
    monkeypatch.setattr(console, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(console, "PROGRESS_EVERY_S", 0.0)
    assert run(["--backends", "numpy", "--epochs", "2"], tmp_path) == 0
    captured = capsys.readouterr()
    assert "numpy: epoch 1/1 done" in captured.err and "timing: round 3/3" in captured.err
    assert "..." not in captured.out
    assert run(["--backends", "numpy", "--epochs", "2", "--quiet"], tmp_path) == 0
    quiet = capsys.readouterr()
    assert "..." not in quiet.err and quiet.out.startswith("VERDICT")


def test_progress_lines_come_every_few_seconds_not_every_epoch(monkeypatch, capsys):
    clock = iter(range(0, 1000, 2))                     # each reading 2 s after the last
    monkeypatch.setattr(console.time, "perf_counter", lambda: next(clock))
    progress = console.Progress(True)
    progress.begin("numpy")
    for epoch in range(10):
        progress.epoch(epoch, 10)
    lines = capsys.readouterr().err.splitlines()
    # first after PROGRESS_AFTER_S (3 s), then at most every PROGRESS_EVERY_S (5 s): epochs 1, 4, 7
    assert [line.split("epoch ")[1].split("/")[0] for line in lines] == ["1", "4", "7"]


def test_a_jit_backend_announces_its_compile_on_stderr(tmp_path, monkeypatch, capsys):
    add_fake_backend(monkeypatch, "jitted", describe={"backend": "jitted", "numba": "0.0"})
    assert run(["--backends", "jitted", "--epochs", "1"], tmp_path) == 0
    err = capsys.readouterr().err
    assert "compiling kernels for jitted, first run only, " + measuring.COMPILE_NOTICE in err
    assert "compiling kernels for numpy" not in err


@pytest.mark.parametrize("flag", [[], ["--cuda-simulator"]])
def test_cuda_simulator_flag_is_set_before_numba_is_imported(flag, tmp_path, monkeypatch):
    """In a fresh process (this one imported Numba long ago): the flag alone turns the simulator on."""
    import subprocess
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    code = ("import sys, run_comparison as r; r.MATMUL_N = 64; "
            f"sys.exit(r.main({['--backends', 'numpy', '--epochs', '1', '--quiet', '--out', str(tmp_path)] + flag!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=run_comparison.default_out_dir().parent.parent)
    assert done.returncode == 0, done.stderr
    [json_path] = results_in(tmp_path, ".json")
    document = resultfiles.read_results(json_path)
    assert document["machine"]["cuda_simulator"] is bool(flag)
    assert document["config"]["cuda_simulator"] is bool(flag)


def test_importing_the_harness_does_not_import_numba():
    """What --cuda-simulator relies on: main() can still set NUMBA_ENABLE_CUDASIM before Numba's first import."""
    import subprocess
    code = ("import sys, run_comparison; "
            "sys.exit(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'numba')) or None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=run_comparison.default_out_dir().parent.parent)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("error, recorded", [
    (IndexError("kernel wrote out of bounds"), "IndexError"),
    # the reference trains cleanly, so a backend diverging alone disagrees with it (exit 1, not 3)
    (NonFiniteLossError("training diverged: the loss of epoch 1, minibatch 3 is not finite", 1, 3), "minibatch 3"),
])
def test_a_backend_that_fails_fails_the_verdict_and_the_others_still_run(tmp_path, monkeypatch, capsys,
                                                                       error, recorded):
    def failing_train(params, data, config, progress=None):
        raise error
    add_fake_backend(monkeypatch, "failing", train=failing_train)
    add_fake_backend(monkeypatch, "fine")
    assert run(["--backends", "failing,fine", "--epochs", "1"], tmp_path) == 1
    captured = capsys.readouterr()
    assert "VERDICT: FAIL" in captured.out and str(error) in captured.err
    document = resultfiles.read_results(results_in(tmp_path, ".json")[0])
    assert recorded in document["runs"][0]["failed"]["failing"]
    assert document["runs"][0]["results"]["fine"]["agrees"] is True


def test_a_busy_machine_gives_one_warning_line_and_is_recorded(tmp_path, monkeypatch, capsys):
    """A fake load reading: other processes hold 1.5 of 2 cores, and the load average is 3."""
    monkeypatch.setattr(machine, "load_reading", lambda window_s=None: {
        "load_1min": 3.0, "cores": 2, "others_cores": 1.5, "window_s": 0.5})
    assert run(["--backends", "numpy", "--epochs", "1"], tmp_path) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1
    assert "other processes used up to 1.5 of 2 cores" in warnings[0]
    assert "load average was 3.0 on 2 cores" in warnings[0]
    document = resultfiles.read_results(results_in(tmp_path, ".json")[0])
    assert document["noise"]["busy"] is True and document["noise"]["warning"] == warnings[0]
    assert document["load"]["before"]["others_cores"] == document["load"]["after"]["others_cores"] == 1.5


def test_a_thread_sweep_writes_the_scaling_record(tmp_path, monkeypatch, capsys):
    """--sweep threads=1,2 on a tiny workload: every CPU backend at 1 and 2 threads in the same rounds."""
    monkeypatch.setattr(machine, "usable_cores", lambda: 2)      # also on a one-core machine (Numba has 2 threads)
    assert run(["--backends", "numba_cpu", "--workload", "light", "--hidden", "4", "--epochs", "1",
                "--repeats", "3", "--sweep", "threads=1,2"], tmp_path) == 0
    out = capsys.readouterr().out
    assert "Strong scaling of numba_cpu" in out and "serial fraction s =" in out and "Loss log" in out
    document = resultfiles.read_results(results_in(tmp_path, ".json")[0])
    assert document["config"]["sweep"] == {"param": "threads", "values": [1, 2]} and document["sweep"] is None
    scaling = document["scaling"]
    assert set(scaling) == {"numpy", "numba_cpu"}
    for record in scaling.values():
        assert record["threads"] == [1, 2] and record["mode"] == "strong" and record["repeats"] == 3
        assert record["speedup_vs_1"][0] == 1.0 and record["parallel_efficiency"][0] == 1.0
        assert record["parallel_efficiency"][1] == pytest.approx(record["speedup_vs_1"][1] / 2)
        assert all(q1 <= m <= q3 for q1, m, q3 in zip(record["q1_seconds"], record["median_seconds"],
                                                      record["q3_seconds"]))
        assert 0.0 <= record["serial_fraction"] <= 1.0
        assert record["serial_fraction"] == measuring.serial_fraction([1, 2], record["median_seconds"])
    numba_cpu = document["runs"][0]["results"]["numba_cpu"]
    assert numba_cpu["agrees"] is True and numba_cpu["parallel_efficiency"] is not None


def test_weak_scaling_grows_the_samples_with_the_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "usable_cores", lambda: 2)
    assert run(["--backends", "numpy", "--workload", "heavy", "--samples", "32", "--hidden", "4", "--batch-size",
                "16", "--seq-len", "4", "--epochs", "1", "--repeats", "1", "--sweep", "threads=1,2", "--weak",
                "--quiet"], tmp_path) == 0
    document = resultfiles.read_results(results_in(tmp_path, ".json")[0])
    record = document["scaling"]["numpy"]
    assert record["mode"] == "weak" and document["config"]["weak"] is True
    assert record["speedup_vs_1"][1] == pytest.approx(2 * record["parallel_efficiency"][1])


def test_the_torch_row_agrees_with_the_reference_and_is_timed(tmp_path, capsys):
    pytest.importorskip("torch", reason="PyTorch is optional: pip install torch==2.13.0")
    assert run(["--backends", "numpy,torch", "--workload", "light", "--hidden", "4", "--epochs", "2",
                "--repeats", "2"], tmp_path) == 0
    assert "VERDICT: PASS: torch agree" in capsys.readouterr().out
    document = resultfiles.read_results(results_in(tmp_path, ".json")[0])
    torch_row = document["runs"][0]["results"]["torch"]
    assert torch_row["agrees"] is True and torch_row["timing_rounds"] == 2 and torch_row["speedup"] > 0
    assert torch_row["is_device"] is (torch_row["stats"]["device"] != "cpu")
    assert document["availability"]["torch"]["describe"]["torch"]


def test_torch_is_left_out_of_a_default_run_and_a_missing_package_is_one_sentence(tmp_path, monkeypatch, capsys):
    names, census = select_backends(None, use_simulator=False)
    assert "torch" not in names and "--backends" in census["torch"].skip
    monkeypatch.setitem(PEERS, "ghost", ("parallel_lstm.reports.torch_baseline", "no_such_package_here"))
    assert select_backends(None, use_simulator=False)[1]["ghost"].reason == "no_such_package_here is not installed"

    def missing():
        raise ImportError("No module named 'torch'")
    monkeypatch.setattr(torch_baseline, "_torch", missing)
    assert run(["--backends", "torch", "--epochs", "1"], tmp_path) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "PyTorch is not installed" in message and "pip install" in message


def test_blas_threads_pins_the_reference_and_is_stated_with_the_speedup(tmp_path, capsys):
    assert run(["--backends", "numpy", "--epochs", "1", "--repeats", "2", "--blas-threads", "1",
                "--no-one-thread"], tmp_path) == 0
    out = capsys.readouterr().out
    assert "speedup = numpy on 1 BLAS threads" in out and "NumPy BLAS" in out and "on 1 threads" in out
    document = resultfiles.read_results(results_in(tmp_path, ".json")[0])
    result = document["runs"][0]["results"]["numpy"]
    assert document["config"]["blas_threads"] == 1 and document["machine"]["blas"]["threads"] == 1
    assert result["reference_blas_threads"] == result["threads"] == 1 and result["round_threads"] == [1, 1]
    assert result["one_thread_round_seconds"] is None and result["parallel_efficiency"] is None


def add_recording_backend(monkeypatch, name, seen: list):
    """A backend that trains with the reference and appends every (params, config) it is given, for training
    and for the timing rounds' trainers alike."""
    def recording_train(params, data, config, progress=None):
        seen.append((params.copy(), config))
        return lstm_numpy.train(params, data, config, progress)

    def recording_trainer(params, data, config):
        seen.append((params.copy(), config))
        return lstm_numpy.make_trainer(params, data, config)

    add_fake_backend(monkeypatch, name, train=recording_train)
    monkeypatch.setattr(sys.modules[f"fake_backend_{name}"], "make_trainer", recording_trainer)


def assert_same_params(got, expected):
    assert got.dtype == expected.dtype
    for name, a, b in zip(lstm_numpy.params.NAMES, got.arrays(), expected.arrays()):
        np.testing.assert_array_equal(a, b, err_msg=name)


LIGHT_TINY = ["--workload", "light", "--hidden", "4", "--repeats", "1", "--no-one-thread"]


def test_save_params_then_init_params_starts_every_backend_from_the_saved_weights(tmp_path, monkeypatch, capsys):
    saved = tmp_path / "light.npz"
    assert run(LIGHT_TINY + ["--backends", "numpy", "--epochs", "2", "--save-params", str(saved)], tmp_path / "a") == 0
    assert f"params:  {saved}" in capsys.readouterr().out
    workload = make_workload("light", hidden=4, epochs=2)
    trained = lstm_numpy.train(workload.initial_params(), workload.data, workload.config)
    assert_same_params(lstm_numpy.load_params(saved), trained.params)      # the reference's final weights
    first = resultfiles.read_results(results_in(tmp_path / "a", ".json")[0])
    assert first["config"]["save_params"] == str(saved) and first["config"]["init_params"] is None

    seen = []
    add_recording_backend(monkeypatch, "recording", seen)
    assert run(LIGHT_TINY + ["--backends", "numpy,recording", "--epochs", "1", "--init-params", str(saved)],
               tmp_path / "b") == 0
    assert seen                                    # the recording backend's training run and its rounds' trainer
    for params, _ in seen:
        assert_same_params(params, trained.params)
    document = resultfiles.read_results(results_in(tmp_path / "b", ".json")[0])
    # the reference started from the file too: its losses are those of training on from the saved weights
    one_epoch = make_workload("light", hidden=4, epochs=1)
    continued = lstm_numpy.train(trained.params, one_epoch.data, one_epoch.config)
    fresh = lstm_numpy.train(one_epoch.initial_params(), one_epoch.data, one_epoch.config)
    numpy_result = document["runs"][0]["results"]["numpy"]
    assert numpy_result["train_loss"] == continued.train_loss != fresh.train_loss
    assert document["runs"][0]["results"]["recording"]["agrees"] is True
    assert document["config"]["init_params"] == {"path": str(saved),
                                                 "sha256": hashlib.sha256(saved.read_bytes()).hexdigest()}


@pytest.mark.parametrize("options, says", [
    (["--hidden", "8"], "needs D=1, H=8, Y=1; give --hidden 4 or a checkpoint with H=8"),
    (["--dtype", "float32"], "holds float64 weights, but this run is float32; give --dtype float64"),
    (["--workload", "seed"], "needs D=3, H=4, Y=3; give a checkpoint saved from the seed workload"),
])
def test_a_mismatched_init_params_is_refused_before_training_or_any_file(options, says, tmp_path, monkeypatch,
                                                                          capsys):
    saved = tmp_path / "light-h4.npz"
    lstm_numpy.save_params(saved, make_workload("light", hidden=4).initial_params())
    monkeypatch.setattr(run_comparison, "measure_all", lambda *args: pytest.fail("training started"))
    new_checkpoint = tmp_path / "new.npz"
    argv = LIGHT_TINY + ["--backends", "numpy", "--epochs", "1", "--init-params", str(saved),
                         "--save-params", str(new_checkpoint)] + options
    assert run(argv, tmp_path / "results") == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and message.endswith(".") and says in message, message
    assert not (tmp_path / "results").exists() and not new_checkpoint.exists()


def test_clip_norm_reaches_every_backend_and_the_backends_still_agree(tmp_path, monkeypatch, capsys):
    """A clip of 0.05 is active on light (the losses change), and numba_cpu still agrees with the reference:
    had it trained unclipped, its losses would be the unclipped ones."""
    seen = []
    add_recording_backend(monkeypatch, "recording", seen)
    assert run(LIGHT_TINY + ["--backends", "numpy,numba_cpu,recording", "--epochs", "2", "--clip-norm", "0.05"],
               tmp_path) == 0
    assert "VERDICT: PASS: numba_cpu, recording agree" in capsys.readouterr().out
    assert len(seen) >= 2 and {config.clip_norm for _, config in seen} == {0.05}   # training and the rounds
    document = resultfiles.read_results(results_in(tmp_path, ".json")[0])
    assert document["config"]["clip_norm"] == document["config"]["train_config"]["clip_norm"] == 0.05
    workload = make_workload("light", hidden=4, epochs=2)
    clipped = lstm_numpy.train(workload.initial_params(), workload.data, dataclasses.replace(workload.config,
                                                                                              clip_norm=0.05))
    unclipped = lstm_numpy.train(workload.initial_params(), workload.data, workload.config)
    results = document["runs"][0]["results"]
    assert results["numpy"]["train_loss"] == clipped.train_loss != unclipped.train_loss
    assert results["numba_cpu"]["agrees"] is True


def logged_epochs(out: str) -> list[int]:
    """The epoch numbers of the loss log's rows (between its column header and the verdict)."""
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("epoch ")) + 1
    rows = itertools.takewhile(lambda line: line[:1].isdigit(), lines[start:])
    return [int(row.split()[0]) for row in rows]


def test_the_loss_log_shows_the_first_last_and_every_kth_epoch_unless_full_log(tmp_path, capsys):
    argv = LIGHT_TINY + ["--backends", "numpy", "--epochs", "45"]
    assert run(argv, tmp_path) == 0
    out = capsys.readouterr().out
    assert logged_epochs(out) == list(range(0, 43, 3)) + [44]
    assert "epochs shown: 0, 3, 6, ..., 42 and the last, 44 (every 3 epochs: 16 of 45; --full-log" in out
    assert run(argv + ["--full-log"], tmp_path) == 0
    out = capsys.readouterr().out
    assert logged_epochs(out) == list(range(45)) and "epochs shown: every epoch, 0 to 44" in out


@pytest.mark.parametrize("epochs", [1, 6, 20, 21, 22, 31, 45, 99, 300, 301, 1000, 12345])
def test_the_concise_log_keeps_10_to_20_lines_with_the_first_and_last_epoch(epochs):
    shown = console.shown_epochs(epochs)
    assert shown[0] == 0 and shown[-1] == epochs - 1 and shown == sorted(set(shown))
    assert len(shown) == epochs if epochs <= 20 else 10 <= len(shown) <= 20
    steps = {b - a for a, b in zip(shown, shown[1:-1])}
    assert len(steps) <= 1                         # evenly spaced but for the last
    assert console.shown_epochs(epochs, full=True) == list(range(epochs))
    assert len(console.shown_epochs(300)) == 16


def test_a_taken_save_params_is_refused_before_any_work_and_kept(tmp_path, monkeypatch, capsys):
    taken = tmp_path / "weights.npz"
    taken.write_bytes(b"an earlier file")
    monkeypatch.setattr(run_comparison, "build_workloads", lambda args: pytest.fail("work started"))
    assert run(["--backends", "numpy", "--epochs", "1", "--save-params", str(taken)], tmp_path / "results") == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "already exists" in message and "kept" in message
    assert taken.read_bytes() == b"an earlier file" and not (tmp_path / "results").exists()


def test_a_save_params_name_taken_during_the_run_is_kept_and_one_sentence(tmp_path, monkeypatch, capsys):
    """Another process takes the name after the check: publishing never replaces its file."""
    target = tmp_path / "weights.npz"

    def train_then_take_the_name(params, data, config, progress=None):
        if not target.exists():
            target.write_bytes(b"another process's file")
        return lstm_numpy.train(params, data, config, progress)
    add_fake_backend(monkeypatch, "racing", train=train_then_take_the_name)
    assert run(["--backends", "racing", "--epochs", "1", "--save-params", str(target)], tmp_path / "results") == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "already exists" in message
    assert target.read_bytes() == b"another process's file"
