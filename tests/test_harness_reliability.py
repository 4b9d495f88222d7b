"""The harness's promise under a user's mistakes and an unlucky machine: one sentence and a non-zero exit,
nothing half-written (run_comparison.py, reports/resultfiles.py over lstm_numpy/files.py)."""
from __future__ import annotations

import errno
import os

import pytest

from parallel_lstm import run_comparison
from parallel_lstm.lstm_numpy import files
from parallel_lstm.reports import machine, resultfiles

TINY = ["--backends", "numpy", "--epochs", "1", "--hidden", "3"]


@pytest.fixture(autouse=True)
def fast_harness(monkeypatch):
    monkeypatch.setattr(run_comparison, "MATMUL_N", 32)
    monkeypatch.setattr(run_comparison, "DEFAULT_REPEATS", 1)
    monkeypatch.setattr(machine, "LOAD_WINDOW_S", 0.01)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_an_empty_out_is_refused_before_any_work(capsys, monkeypatch):
    monkeypatch.setattr(run_comparison, "build_workloads", lambda args: pytest.fail("work started"))
    assert run_comparison.main(TINY + ["--out", ""]) == 2
    assert "--out is empty" in one_error_line(capsys)


def test_a_kernel_version_without_cuda_is_refused_before_any_file(tmp_path, capsys):
    assert run_comparison.main(TINY + ["--kernel-version", "7", "--out", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert "--kernel-version 7" in line and "numba_cuda" in line
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_kernel_version_is_refused_on_the_simulator(tmp_path, capsys):
    argv = ["--backends", "numba_cuda", "--cuda-simulator", "--epochs", "1", "--hidden", "2", "--kernel-version", "99"]
    assert run_comparison.main(argv + ["--out", str(tmp_path)]) == 2
    assert "--kernel-version 99 does not exist" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_publishing_leaves_no_file_and_exits_130(tmp_path, capsys, monkeypatch):
    """A KeyboardInterrupt after the CSV has its name and before the JSON has its own: the pair is rolled back."""
    give_name = files._give_name
    calls = []

    def interrupted_give_name(tmp, path, overwrite, what):
        calls.append(path)
        if path.endswith(".json"):
            raise KeyboardInterrupt
        give_name(tmp, path, overwrite, what)

    monkeypatch.setattr(files, "_give_name", interrupted_give_name)
    assert run_comparison.main(TINY + ["--out", str(tmp_path)]) == 130
    assert "interrupted" in one_error_line(capsys)
    assert [p[-4:] for p in calls] == [".csv", "json"]
    assert list(tmp_path.iterdir()) == []          # neither the CSV, nor a temporary file


def test_a_full_disk_is_one_sentence_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    write = files._write

    def full_disk_for_json(fd, content, path, what):
        if path.endswith(".json"):
            os.close(fd)
            raise files._user_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path, what)
        return write(fd, content, path, what)

    monkeypatch.setattr(files, "_write", full_disk_for_json)
    assert run_comparison.main(TINY + ["--out", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert "disk" in line.lower() or "space" in line.lower(), line
    assert list(tmp_path.iterdir()) == []


def test_results_files_get_the_usual_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        json_path, csv_path = resultfiles.write_results(str(tmp_path), "stem", {"schema": resultfiles.SCHEMA, "config": {"dtype": "float64"}, "runs": []})
    finally:
        os.umask(previous)
    assert {oct(os.stat(p).st_mode & 0o777) for p in (json_path, csv_path)} == {"0o644"}


def test_a_taken_name_moves_on_to_the_next_suffix(tmp_path):
    document = {"schema": resultfiles.SCHEMA, "config": {"dtype": "float64"}, "runs": []}
    first = resultfiles.write_results(str(tmp_path), "stem", document)
    second = resultfiles.write_results(str(tmp_path), "stem", document)
    assert first[0].endswith("stem.json") and second[0].endswith("stem-2.json")


def test_a_numba_cpu_trainer_sizes_its_buffers_by_the_data_not_the_batch_size():
    from parallel_lstm import lstm_numba_cpu
    from parallel_lstm import lstm_numpy as ref
    from parallel_lstm.data import make_workload
    w = make_workload("light", epochs=1)
    params = ref.init_params(*w.sizes, seed=0)
    trainer = lstm_numba_cpu.make_trainer(params, w.data, ref.TrainConfig(batch_size=10 ** 9, epochs=1))
    assert trainer.ws.h.shape[1] == w.data.X_train.shape[0]
