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

import lstm_numpy
from data import make_workload
from reports import build, cpu_bench, gpu_check, machine, measuring, resultfiles
from reports.census import BackendStatus, select_backends
from lstm_numpy.backends import cuda_simulator_on


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
    monkeypatch.setattr(gpu_check, "backend_status", lambda name: status)
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
