"""The bench tools (reports.cpu_bench, reports.gpu_check) and the measuring home they share (reports.measuring).

Both tools write results files of the harness's schema; these tests read them back with
reports.resultfiles and the report's own readers. gpu_check's timing path is driven here
with a stand-in CUDA backend (the reference under another name), since no test may time
Numba's CUDA simulator.
"""
from __future__ import annotations

import csv
import types

import pytest

from parallel_lstm import lstm_numpy
from parallel_lstm.data import make_workload
from parallel_lstm.reports import build, cpu_bench, gpu_budget, gpu_check, machine, measuring, resultfiles
from parallel_lstm.reports.census import BackendStatus, select_backends
from parallel_lstm.lstm_numpy.backends import cuda_simulator_on


@pytest.fixture(autouse=True)
def short_load_readings(monkeypatch):
    monkeypatch.setattr(machine, "LOAD_WINDOW_S", 0.01)


def test_speedup_and_parallel_efficiency_by_hand():
    assert measuring.speedup(6.0, 2.0) == 3.0
    assert measuring.parallel_efficiency(8.0, 2.5, 4) == 0.8     # 8 / (4 * 2.5)
    assert measuring.parallel_efficiency(1.0, 1.0, 1) == 1.0


def test_epoch_spread_keeps_the_quartiles():
    spread = measuring.epoch_spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert spread == {"min": 1.0, "q1": 2.0, "median": 3.0, "q3": 4.0, "max": 5.0}


def test_matmul_rate_is_the_median_of_its_repeats(monkeypatch):
    timed = []

    def spy(seconds):
        timed.append(list(seconds))
        return 2.0
    monkeypatch.setattr(measuring, "median_seconds", spy)
    rate = measuring.matmul_gflops(n=8, repeats=3)
    assert [len(times) for times in timed] == [3, 3]                 # float64, float32: the repeats alone
    assert rate["float64_seconds"] == rate["float32_seconds"] == 2.0
    assert rate["float64_gflops"] == pytest.approx(2 * 8**3 / 2.0 / 1e9)


def test_cpu_bench_prints_its_table_and_writes_harness_results(tmp_path, capsys):
    assert cpu_bench.main(["--workloads", "light", "--repeats", "1", "--no-heavy-float32",
                           "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "A@B" in printed and "threading layer" in printed
    row = [line for line in printed.splitlines() if line.startswith("light")]
    assert len(row) == 1 and row[0].rstrip().endswith("%")

    [every_path] = [p for p in tmp_path.glob("*.json") if p.stem.endswith("_light-cpu_bench")]
    [one_path] = [p for p in tmp_path.glob("*.json") if p.stem.endswith("_light-cpu_bench-1thread")]
    every, one = resultfiles.read_results(every_path), resultfiles.read_results(one_path)
    assert every["tool"] == one["tool"] == "reports.cpu_bench"
    assert every["config"]["threads"] is None and one["config"]["threads"] == 1
    for document in (every, one):
        assert document["verdict"]["agree"] and document["verdict"]["compared"] == ["numba_cpu"]
        assert document["runs"][0]["results"]["numba_cpu"]["agrees"] is True
    assert one["runs"][0]["results"]["numba_cpu"]["threads"] == 1
    # both documents' timings come from the same interleaved rounds, and say how busy the machine was
    numba, single = every["runs"][0]["results"]["numba_cpu"], one["runs"][0]["results"]["numba_cpu"]
    assert numba["timing_rounds"] == single["timing_rounds"] == 1 and every["load"] == one["load"]
    if numba["one_thread_round_seconds"] is not None:     # Numba may run more than one thread here
        assert single["round_seconds"] == numba["one_thread_round_seconds"]
        assert numba["parallel_efficiency"] == pytest.approx(single["round_seconds"][0]
                                                             / (numba["threads"] * numba["round_seconds"][0]))
    assert build.latest_by_workload(build.read_documents(tmp_path))["light"]["_file"].endswith("light-cpu_bench.json")


def test_gpu_check_refuses_to_time_the_simulator(tmp_path, capsys):
    if not cuda_simulator_on():
        pytest.skip("only meaningful on the simulator")
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    assert "simulator" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gpu_check_rejects_an_unknown_version_in_one_sentence(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "out"), "--versions", "1,99"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "unknown kernel version '99'" in message
    assert not (tmp_path / "out").exists()


def test_cpu_baselines_on_a_sample_are_scaled_to_a_full_epoch(monkeypatch):
    seen = {}

    def fake_measure(status, workload, params, progress, compiled):
        seen["rows"] = (len(workload.data.X_train), len(workload.data.X_valid))
        return {"epoch_seconds": [1.0, 3.0], "median_epoch_seconds": 2.0, "user_seconds_per_epoch": 0.5,
                "sys_seconds_per_epoch": 0.25}, None
    monkeypatch.setattr(gpu_check, "measure_backend", fake_measure)
    heavy = make_workload("heavy", samples=256, hidden=4, batch_size=64)     # 4 minibatches
    result, _ = gpu_check.measure_baseline(None, heavy, None, 1, None, set())
    assert seen["rows"] == (64, min(64, len(heavy.data.X_valid)))       # one minibatch, one validation chunk
    assert result["extrapolated_from_minibatches"] == 1
    assert result["epoch_seconds"] == [4.0, 12.0] and result["median_epoch_seconds"] == 8.0
    assert result["user_seconds_per_epoch"] == 2.0 and result["sys_seconds_per_epoch"] == 1.0


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """gpu_check on a pretend GPU: numba_cuda is the reference under that name, reporting a device, with
    versions 1 and 2; ``wrong[0] = v`` makes version v's loss_and_grads drift by a relative 1e-6."""
    module, wrong = types.ModuleType("stand_in_cuda"), [None]

    def train(params, data, config, progress=None):
        history = lstm_numpy.train(params, data, config, progress)
        history.stats = {"device": "Stand-in GPU", "compute_capability": "9.0", "kernel_version": config.kernel_version,
                         "launches_per_epoch": 2, "h2d_per_epoch": 1, "d2h_per_epoch": 1}
        return history

    def loss_and_grads(params, X, Y, task, kernel_version=None):
        loss, grads = lstm_numpy.loss_and_grads(params, X, Y, task)
        return loss * (1 + 1e-6 * (kernel_version == wrong[0])), grads
    module.train, module.make_trainer, module.loss_and_grads = train, lstm_numpy.make_trainer, loss_and_grads
    module.is_available, module.describe = (lambda: None), (lambda: {"backend": "numba_cuda", "simulator": False})
    module.KERNEL_VERSIONS = {1: "first", 2: "second"}
    status = BackendStatus("numba_cuda", module=module, describe=module.describe(), selected=True)

    def census(requested, use_simulator):
        names, statuses = select_backends(["numpy"], use_simulator)
        return names + ["numba_cuda"], {**statuses, "numba_cuda": status}
    no_torch = BackendStatus("torch", reason="left out of this test")
    monkeypatch.setattr(gpu_check, "backend_status", lambda name: status if name == "numba_cuda" else no_torch)
    monkeypatch.setattr(gpu_check, "select_backends", census)
    monkeypatch.setattr(gpu_check, "cuda_simulator_on", lambda: False)
    monkeypatch.setattr(gpu_check, "matmul_gflops", lambda: measuring.matmul_gflops(n=64))
    return wrong


GPU_CHECK = ["--workloads", "light", "--versions", "1,2", "--repeats", "2", "--dtype", "float64"]
# 2 dtypes x (3 sizes x 2 tasks of loss_and_grads + 1 training run) x 2 versions
VALIDATION_CHECKS = 2 * (3 * 2 + 1) * 2


def test_gpu_check_validates_then_writes_one_results_file_per_version_that_the_report_reads(
        stand_in_gpu, tmp_path, capsys):
    assert gpu_check.main(GPU_CHECK + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"all {VALIDATION_CHECKS} validation checks match the reference" in out
    assert out.index("validation checks match") < out.index("ms/epoch")      # validation before timing

    read = build.read_documents(tmp_path)
    assert len(read) == 2 and all(d["_file"].endswith(f"_light-gpu_check-v{v}.json") for v, d in zip((1, 2), read))
    for version, document in zip((1, 2), read):
        assert resultfiles.read_results(tmp_path / document["_file"])["tool"] == "reports.gpu_check"
        assert document["config"]["kernel_version"] == version
        assert {row["version"] for row in document["validation"]} == {version}
        assert len(document["validation"]) == VALIDATION_CHECKS // 2
        assert document["verdict"]["agree"] and "numba_cuda" in document["verdict"]["compared"]
        cuda = document["runs"][0]["results"]["numba_cuda"]
        assert cuda["stats"]["kernel_version"] == version and cuda["agrees"] is True and cuda["timed"]
        assert cuda["breakdown"]["transfer_seconds"] is not None and cuda["speedup"] > 0
        assert cuda["timing_rounds"] == 2 and len(cuda["round_seconds"]) == 2 and document["noise"] is not None
        numpy_rounds = document["runs"][0]["results"]["numpy"]["round_seconds"]
        assert numpy_rounds == read[0]["runs"][0]["results"]["numpy"]["round_seconds"]   # one set of rounds
        assert document["machine"]["cuda_device"]["device"] == "Stand-in GPU"
    assert build.cuda_versions_figure(str(tmp_path / "figures"), read)     # the report plots both versions


def test_gpu_check_times_nothing_after_a_failed_validation(stand_in_gpu, tmp_path, capsys):
    stand_in_gpu[0] = 2
    assert gpu_check.main(GPU_CHECK + ["--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "validation checks FAILED; not timing" in captured.err and "ms/epoch" not in captured.out
    [json_path] = list(tmp_path.glob("*.json"))
    assert json_path.stem.endswith("_gpu_check-validation")
    document = resultfiles.read_results(json_path)
    failed = [row for row in document["validation"] if not row["ok"]]
    assert len(failed) == 2 * 3 * 2 and {(row["version"], row["check"]) for row in failed} == {(2, "loss_and_grads")}
    assert document["exit_code"] == 1 and not document["verdict"]["agree"] and document["runs"] == []
    assert f"{len(failed)} of {VALIDATION_CHECKS} validation checks failed" in document["verdict"]["line"]
    assert document["verdict"]["mismatches"][0]["message"].startswith("loss:")
    assert build.read_documents(tmp_path) == []                              # nothing for the report to plot
    with open(json_path.with_suffix(".csv"), newline="") as handle:
        assert len(list(csv.reader(handle))) == 1                            # the header alone


def test_gpu_check_records_the_napkin_prediction_beside_each_cuda_timing(stand_in_gpu, tmp_path, capsys):
    assert gpu_check.main(GPU_CHECK + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("; napkin ") == 2 and "of the float64 FMA peak" in out
    for document in build.read_documents(tmp_path):
        cuda = document["runs"][0]["results"]["numba_cuda"]
        napkin = cuda["napkin"]
        assert napkin["version"] == document["config"]["kernel_version"] and napkin["workload"] == "light"
        assert napkin["measured_over_predicted"] == pytest.approx(cuda["median_epoch_seconds"]
                                                                  / napkin["predicted_epoch_seconds"])
        assert napkin["fraction_of_peak"] == pytest.approx(napkin["flops_per_epoch"] / cuda["median_epoch_seconds"]
                                                           / napkin["peak_flops"])
        assert "napkin" not in document["runs"][0]["results"]["numpy"]
    assert not list(tmp_path.glob("*gpu_check-plan.json"))          # no budget, nothing skipped: no plan file


# ---------------------------------------------------------------------------- the time budget

def test_budget_counts_from_its_start_on_its_clock():
    now = [100.0]
    budget = gpu_budget.Budget(60.0, clock=lambda: now[0])
    now[0] = 130.0
    assert budget.elapsed() == 30.0 and budget.left() == 30.0 - gpu_budget.MARGIN_S
    assert budget.fits(20.0) and not budget.fits(26.0)
    assert gpu_budget.Budget(None).left() == float("inf")


def test_choose_takes_the_cheapest_entries_that_fit_and_says_why_not_the_others():
    costs = {"numpy": 50.0, "numba_cuda v3": 300.0, "numba_cuda v4": 40.0}
    chosen, reasons = gpu_budget.choose(costs, 100.0)
    assert chosen == ["numpy", "numba_cuda v4"]                      # in their own order, 90 s of 100
    assert list(reasons) == ["numba_cuda v3"] and "needs about 300 s" in reasons["numba_cuda v3"]
    assert "10 s of the budget are left" in reasons["numba_cuda v3"]
    costs["numba_cuda v1"] = 55.0                                   # ranked first, the versions crowd out numpy
    chosen, reasons = gpu_budget.choose(costs, 100.0, rank=lambda entry: 0 if entry.startswith("numba_cuda") else 1)
    assert chosen == ["numba_cuda v4", "numba_cuda v1"] and set(reasons) == {"numpy", "numba_cuda v3"}


def test_trim_rounds_drops_the_phases_first_then_the_costliest_entries():
    def entry(key, seconds):
        return measuring.Timed(key, None, None, phases=True, expected_seconds=seconds)
    kept, dropped, no_phases = gpu_budget.trim_rounds([entry("a", 2.0), entry("b", 4.0)], 5, 100.0)
    assert [e.key for e in kept] == ["a", "b"] and not dropped and not no_phases       # 5 x 6 s fit
    kept, dropped, no_phases = gpu_budget.trim_rounds([entry("a", 2.0), entry("b", 4.0)], 5, 20.0)
    assert no_phases and [e.expected_seconds for e in kept] == [1.0, 2.0] and not dropped
    kept, dropped, no_phases = gpu_budget.trim_rounds([entry("a", 2.0), entry("b", 40.0)], 5, 10.0)
    assert [e.key for e in kept] == ["a"] and [e.key for e in dropped] == ["b"]          # one round of b: 20 s


@pytest.fixture
def two_workloads(stand_in_gpu, monkeypatch):
    """light and a heavy small enough for the stand-in; a fake clock that advances ``step[0]`` seconds per
    training run; ``fail[0] = (workload, version, exception)`` raises it in that version's training."""
    now, step, fail = [0.0], [30.0], [None]
    real_make, real_measure = gpu_check.make_workload, gpu_check.measure_backend

    def small(name, **options):
        if name == "heavy":
            options.update(samples=96, hidden=3, batch_size=32, seq_len=4)
        return real_make(name, **options)

    def measure(status, workload, params, progress, compiled):
        if fail[0] and (workload.name, workload.config.kernel_version) == fail[0][:2]:
            raise fail[0][2]
        now[0] += step[0]
        return real_measure(status, workload, params, progress, compiled)
    monkeypatch.setattr(gpu_check, "make_workload", small)
    monkeypatch.setattr(gpu_check, "measure_backend", measure)
    monkeypatch.setattr(gpu_check, "clock", lambda: now[0])
    return step, fail


TWO_WORKLOADS = ["--workloads", "light,heavy", "--versions", "1,2", "--repeats", "2", "--dtype", "float64"]


def plan_of(folder) -> dict:
    [path] = folder.glob("*_gpu_check-plan.json")
    return {(item["workload"], item["entry"]): item for item in resultfiles.read_results(path)["budget"]["items"]}


def test_gpu_check_skips_what_the_budget_cannot_hold_and_keeps_what_it_wrote(two_workloads, tmp_path, capsys):
    # light's three training runs take 90 fake seconds of 100: heavy's numpy trains (no estimate says
    # otherwise), then no version fits what is left
    assert gpu_check.main(TWO_WORKLOADS + ["--out", str(tmp_path), "--max-seconds", "100"]) == 0
    out = capsys.readouterr().out
    files = sorted(p.name.split("_", 3)[-1] for p in tmp_path.glob("*.json"))
    assert files == ["gpu_check-plan.json", "light-gpu_check-v1.json", "light-gpu_check-v2.json"]
    plan = plan_of(tmp_path)
    assert {key for key, item in plan.items() if item["status"] == "timed"} == {
        ("light", "numpy"), ("light", "numba_cuda v1"), ("light", "numba_cuda v2")}
    for version in (1, 2):
        item = plan["heavy", f"numba_cuda v{version}"]
        assert item["status"] == "skipped" and "of the budget were left" in item["reason"]
        assert f"heavy  numba_cuda v{version}  skipped: " in out
    assert plan["heavy", "numpy"]["status"] == "skipped"      # trained, but nothing to compare it with
    document = resultfiles.read_results(next(tmp_path.glob("*_light-gpu_check-v1.json")))
    assert document["budget"]["max_seconds"] == 100 and document["runs"][0]["results"]["numba_cuda"]["timed"]
    assert "gpu_check: 1" in out and "of the 100 s budget used; 3 timed, 3 skipped" in out


def test_gpu_check_leaves_out_entries_whose_estimate_does_not_fit(two_workloads, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_budget, "COMPILE_ALLOWANCE_S", {"numba_cuda": 1e6})     # no version can fit
    two_workloads[0][0] = 0.0
    assert gpu_check.main(TWO_WORKLOADS + ["--out", str(tmp_path), "--max-seconds", "100"]) == 0
    plan = plan_of(tmp_path)
    assert all(item["status"] == "skipped" for item in plan.values())
    assert "needs about 1000" in plan["light", "numba_cuda v1"]["reason"]
    assert "nothing to compare it with" in plan["light", "numpy"]["reason"]
    assert [p.name for p in tmp_path.glob("*.json")] == [next(tmp_path.glob("*_gpu_check-plan.json")).name]


@pytest.mark.parametrize("stop,code,said", [(KeyboardInterrupt(), 130, "stopped by an interrupt"),
                                             (RuntimeError("device lost"), 4, "stopped by an error (RuntimeError")])
def test_gpu_check_stopped_later_keeps_the_files_it_wrote(two_workloads, tmp_path, capsys, stop, code, said):
    two_workloads[1][0] = ("heavy", 2, stop)
    assert gpu_check.main(TWO_WORKLOADS + ["--out", str(tmp_path)]) == code
    err = capsys.readouterr().err
    files = sorted(p.name.split("_", 3)[-1] for p in tmp_path.glob("*.json"))
    assert files == ["gpu_check-plan.json", "light-gpu_check-v1.json", "light-gpu_check-v2.json"]
    assert said in err and "the 4 results files written before it stand" in err.splitlines()[-1]
    plan = plan_of(tmp_path)
    assert [plan["heavy", e]["status"] for e in ("numpy", "numba_cuda v1", "numba_cuda v2")] == ["failed"] * 3
    assert plan["light", "numba_cuda v2"]["status"] == "timed"
    for path in tmp_path.glob("*_light-gpu_check-v*.json"):
        assert resultfiles.read_results(path)["exit_code"] == 0


def test_gpu_check_help_answers_where_numba_cuda_cannot_be_imported(monkeypatch, capsys):
    broken = BackendStatus("numba_cuda", None, "importing numba_cuda failed (ModuleNotFoundError)")
    monkeypatch.setattr(gpu_check, "backend_status", lambda name: broken)
    assert gpu_check.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: parallel-lstm gpu-check ")
    for argv in (["--out", "anywhere"], ["--out", "anywhere", "--versions", "3"]):    # the reason, not "unknown version"
        assert gpu_check.main(argv) == 2
        assert capsys.readouterr().err == "parallel-lstm gpu-check: importing numba_cuda failed (ModuleNotFoundError).\n"


def test_cpu_bench_stopped_by_ctrl_c_says_so_in_one_line_and_exits_130(monkeypatch, capsys):
    def interrupted(args, argv):
        raise KeyboardInterrupt
    monkeypatch.setattr(cpu_bench, "run", interrupted)
    assert cpu_bench.main(["--workloads", "seed"]) == 130
    assert capsys.readouterr().err == ("parallel-lstm bench: interrupted (Ctrl-C); results files are written whole "
                                       "or not at all, so none is half-written\n")


def test_gpu_check_and_what_it_imports_run_without_threadpoolctl():
    """threadpoolctl is imported only where BLAS threads are pinned or counted; without it the count is unknown
    and pinning is one sentence."""
    import os
    import subprocess
    import sys
    script = ("import sys; sys.modules['threadpoolctl'] = None\n"
              "import parallel_lstm.reports.gpu_check\n"
              "from parallel_lstm.reports import measuring as m, machine as mc\n"
              "assert mc.blas_threads() is None and mc.describe_machine()['blas'] is not None\n"
              "with m.blas_pinned(None): pass\n"
              "try:\n    m.blas_pinned(1)\nexcept m.UserError as exc:\n    print(exc)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert done.returncode == 0, done.stderr
    assert "needs threadpoolctl: pip install threadpoolctl" in done.stdout


def test_sigterm_ends_a_gpu_check_run_as_ctrl_c_does():
    import os
    import signal
    import time
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with gpu_check.sigterm_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)                  # the handler raises at the next bytecode
    assert signal.getsignal(signal.SIGTERM) is before
