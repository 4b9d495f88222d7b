"""Hostile input and hostile conditions: every one ends in one clear sentence (or a clean success), never lost
data, a traceback, a hang or a silently wrong number. Grouped by the class of defect each guards against."""
import errno
import multiprocessing
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from parallel_lstm import lstm_numpy as L
from parallel_lstm.data import LightPipeline, load_series, make_workload, seed_dataset, synthetic_windows, with_config
from parallel_lstm.lstm_numpy import files, memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_sentence(exc_info) -> str:
    message = str(exc_info.value)
    assert len(message.splitlines()) == 1 and message.endswith("."), message
    return message


# ---------------------------------------------------------------- 1. lost data: atomic, never-overwriting files

def save_when_all_are_ready(path, seed, barrier, results):
    barrier.wait()
    try:
        L.save_params(path, L.init_params(2, 3, 1, seed=seed))
        results.put((seed, "saved"))
    except L.UserError as exc:
        results.put((seed, str(exc)))


def test_of_concurrent_savers_to_one_path_exactly_one_succeeds(tmp_path, monkeypatch):
    real_savez = np.savez

    def slow_savez(*args, **kwargs):        # every saver is mid-write before any publishes: the widest race
        time.sleep(0.3)
        real_savez(*args, **kwargs)

    monkeypatch.setattr(np, "savez", slow_savez)
    path, savers = tmp_path / "model.npz", 6
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(savers), context.Queue()
    processes = [context.Process(target=save_when_all_are_ready, args=(path, seed, barrier, results))
                 for seed in range(savers)]
    for process in processes:
        process.start()
    outcomes = dict(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    winners = [seed for seed, outcome in outcomes.items() if outcome == "saved"]
    assert len(winners) == 1, outcomes
    assert all("already exists" in outcome for seed, outcome in outcomes.items() if seed != winners[0])
    loaded = L.load_params(path)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.arrays(), L.init_params(2, 3, 1, seed=winners[0]).arrays()))
    assert os.listdir(tmp_path) == ["model.npz"], "no temporary file is left behind"


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoints_get_0666_less_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        L.save_params(tmp_path / "model.npz", L.init_params(1, 2, 1))
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / "model.npz").st_mode & 0o777 == mode


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(L.UserError) as info:
        L.save_params(tmp_path / "missing" / "model.npz", L.init_params(1, 2, 1))
    message = one_sentence(info)
    assert f"the folder {tmp_path / 'missing'} does not exist" in message and ".tmp" not in message


def test_overwrite_replaces_the_file_whole_with_the_same_mode(tmp_path):
    path = tmp_path / "model.npz"
    L.save_params(path, L.init_params(1, 2, 1, seed=1))
    previous = os.umask(0o022)
    try:
        L.save_params(path, L.init_params(1, 2, 1, seed=2), overwrite=True)
    finally:
        os.umask(previous)
    assert np.array_equal(L.load_params(path).W_ih, L.init_params(1, 2, 1, seed=2).W_ih)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["model.npz"]


def test_a_pair_is_published_together_or_not_at_all(tmp_path):
    taken = tmp_path / "run.json"
    taken.write_text("an earlier run\n")
    with pytest.raises(FileExistsError) as info:          # NameTakenError: a FileExistsError and a UserError
        files.publish_files([(tmp_path / "run.csv", "a,b\n"), (taken, "{}\n")], what="results")
    assert isinstance(info.value, L.UserError) and info.value.path == str(taken)
    assert sorted(os.listdir(tmp_path)) == ["run.json"], "the CSV published first was taken back"
    assert taken.read_text() == "an earlier run\n"
    files.publish_files([(tmp_path / "new.csv", "a,b\n"), (tmp_path / "new.json", b"{}\n")])
    assert (tmp_path / "new.csv").read_text() == "a,b\n" and (tmp_path / "new.json").read_text() == "{}\n"


@pytest.mark.parametrize("interrupt_at", ["writing the second file", "naming the second file"])
def test_ctrl_c_during_a_publish_leaves_nothing(tmp_path, monkeypatch, interrupt_at):
    def second_content(handle):
        handle.write(b"partial")
        if interrupt_at == "writing the second file":
            raise KeyboardInterrupt

    real_link, links = os.link, []

    def link_then_interrupt(source, target):
        links.append(target)
        if len(links) == 2 and interrupt_at == "naming the second file":
            raise KeyboardInterrupt
        real_link(source, target)

    monkeypatch.setattr(files.os, "link", link_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        files.publish_files([(tmp_path / "a.csv", "first"), (tmp_path / "a.json", second_content)])
    assert os.listdir(tmp_path) == [], "neither a temporary file nor half of the pair stays"


def test_a_full_disk_is_one_sentence_and_leaves_nothing(tmp_path):
    def fill_the_disk(handle):
        handle.write(b"x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(L.UserError, match="the disk is full or a file-size limit was reached") as info:
        files.publish_files([(tmp_path / "a.csv", "first"), (tmp_path / "a.json", fill_the_disk)])
    one_sentence(info)
    assert os.listdir(tmp_path) == []


def test_a_file_size_limit_is_one_sentence_and_leaves_nothing(tmp_path):
    code = ("import resource, signal, sys, lstm_numpy as L\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "try:\n"
            "    L.save_params(sys.argv[1], L.init_params(3, 16, 2))\n"
            "except L.UserError as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.npz")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "the disk is full or a file-size limit was reached" in done.stdout, done.stdout
    assert os.listdir(tmp_path) == []


def test_without_hard_links_the_name_is_reserved_exclusively(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EPERM, "hard links are not supported here")

    monkeypatch.setattr(files.os, "link", no_links)
    path = tmp_path / "model.npz"
    L.save_params(path, L.init_params(1, 2, 1, seed=1))
    with pytest.raises(L.UserError, match="already exists"):
        L.save_params(path, L.init_params(1, 2, 1, seed=2))
    assert np.array_equal(L.load_params(path).W_ih, L.init_params(1, 2, 1, seed=1).W_ih)
    assert os.listdir(tmp_path) == ["model.npz"]


# ---------------------------------------------------------------- 2. silently misread data: strict CSV parsing

@pytest.mark.parametrize("text,column,expected", [
    ("Month,Passengers\n1949-01,112\n1949-02,1,234\n", "Passengers", "line 3 has 3 fields, but the header has 2"),
    ('Month,Passengers\n1949-01,112\n1949-02,"1,234"\n', "Passengers", r"line\(s\) 3 \(line 3 holds '1,234'\)"),
    ("x\n112,5\n", "x", "line 2 has 2 fields, but the header has 1"),
    ('x\n"112,5"\n', "x", "line 2 holds '112,5'"),
    ("x\n1_000\n", "x", "line 2 holds '1_000'"),
    ("x\n12 kg\n", "x", "line 2 holds '12 kg'"),
    ("x\nnan\n", "x", "line 2 holds 'nan'"),
    ("x\n1e999\n", "x", "line 2 holds '1e999'"),
    ("t,x\n1,2\n3\n", "x", "line 3 has 1 fields, but the header has 2"),
    ("x,x\n1,2\n", "x", r"names column 'x' 2 times \('x', 'x'\)"),
    ("x, x\n1,2\n", "x", r"names column 'x' 2 times \('x', ' x'\)"),
    ("Month, Passengers\n1949-01,112\n", "Passengers", r"no column 'Passengers', only ' Passengers'"),
    ("Month,Passengers\n1949-01,112\n", "Passengers ", r"no column 'Passengers ', only 'Passengers'"),
    ("Month, Sales\n1949-01,112\n", "Count", r"no column 'Count'; its columns are: 'Month', ' Sales'"),
    ('x\n"1\n', "x", "line 2 is not valid CSV"),
    ("x\n1\n\x002\n", "x", r"line 3 holds '\\x002'"),
    ("", "x", "is empty"),
    ("x\n", "x", "has no values"),
    ("x\n1\n\n2\n", "x", r"missing values on line\(s\) 3"),
    ("t,x\n1,1\n\n2,2\n", "x", "line 3 has 1 fields, but the header has 2"),
])
def test_a_value_that_is_not_plain_is_refused_with_its_line(tmp_path, text, column, expected):
    path = tmp_path / "series.csv"
    path.write_text(text)
    with pytest.raises(L.UserError, match=expected) as info:
        load_series(path, column)
    assert str(path) in one_sentence(info)


def test_plain_numbers_in_every_spelling_are_read_exactly(tmp_path):
    path = tmp_path / "series.csv"
    path.write_text("when,x\r\n1, 12 \r\n2,+5\n3,.5\n4,5.\n5,-1.5e2\n6,7E+1\n\n \n", encoding="utf-8-sig")
    np.testing.assert_array_equal(load_series(path, "x"), [12.0, 5.0, 0.5, 5.0, -150.0, 70.0])
    np.testing.assert_array_equal(load_series(path, "when"), np.arange(1.0, 7.0))   # the BOM is not in the name


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_given_as_data_is_refused_before_reading(device):
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    with pytest.raises(L.UserError, match="is not a regular file") as info:
        load_series(device, "x")
    one_sentence(info)


def test_a_folder_given_as_data_is_refused(tmp_path):
    with pytest.raises(L.UserError, match="is a folder, not a file") as info:
        load_series(tmp_path, "x")
    one_sentence(info)


# ---------------------------------------------------------------- 3. a user's mistake is a sentence, not a traceback

@pytest.mark.parametrize("values", [[112.0], [112.0, 118.0], list(range(100, 110))])
@pytest.mark.parametrize("workload", ["seed", "light"])
def test_a_series_too_short_for_the_pipeline_is_one_sentence(workload, values):
    # pytest turns any RuntimeWarning into an error here, so a warning before the sentence fails too.
    with pytest.raises(L.UserError, match="need at least|too few to split") as info:
        make_workload(workload, series=np.array(values, dtype=float))
    one_sentence(info)


def test_the_seed_series_just_too_short_to_split_is_one_sentence():
    with pytest.raises(L.UserError, match="too few to split"):
        seed_dataset(100 + 10 * np.sin(np.arange(17.0)))
    assert seed_dataset(100 + 10 * np.sin(np.arange(18.0)))[0][0].shape[0] >= 1


@pytest.fixture
def small_machine(monkeypatch):
    """A machine with 1 GiB of memory, so that the size checks do not depend on the host."""
    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: 2 ** 30)


@pytest.mark.parametrize("make", [
    lambda: make_workload("light", hidden=100_000),
    lambda: make_workload("heavy", samples=10 ** 12),
    lambda: make_workload("gpu"),
    lambda: synthetic_windows(10 ** 12, 32),
    lambda: L.init_params(1, 100_000, 1),
], ids=["hidden", "samples", "gpu-workload", "synthetic", "init_params"])
def test_sizes_that_cannot_fit_in_memory_say_how_much_they_need(small_machine, make):
    with pytest.raises(L.UserError, match=r"needs about [\d.]+ [KMGTP]iB of memory, but this machine has 1 GiB") as info:
        make()
    one_sentence(info)


def test_training_that_cannot_fit_in_memory_is_refused_before_the_trainer_is_built(monkeypatch):
    w = make_workload("light")
    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: 2 ** 16)
    built = []
    with pytest.raises(L.UserError, match="needs about .* of memory, but this machine has 64 KiB"):
        L.train_with(lambda *args: built.append(args), w.initial_params(), w.data, w.config)
    assert not built


def test_a_batch_beyond_the_data_is_one_minibatch_of_all_samples():
    w = with_config(make_workload("light", epochs=2), batch_size=10 ** 9)
    seen = []

    def recording_trainer(params, data, config):
        seen.append(config.batch_size)
        return L.make_trainer(params, data, config)

    huge = L.train_with(recording_trainer, w.initial_params(), w.data, w.config)
    whole = L.train(w.initial_params(), w.data, with_config(w, batch_size=95).config)
    assert seen == [95], "no backend is asked for buffers of 10**9 rows"
    assert huge.train_loss == whole.train_loss and huge.valid_loss == whole.valid_loss


def test_epoch_orders_are_drawn_lazily_with_the_same_values():
    rng = np.random.default_rng([7, 0x5EED])            # the documented stream, drawn eagerly
    eager = np.stack([rng.permutation(59) for _ in range(4)])
    orders = L.epoch_orders(59, 4, 7)
    assert len(orders) == 4
    np.testing.assert_array_equal(np.stack(list(orders)), eager)
    assert [orders[k].tolist() for k in (2, 0, 3, -4)] == [eager[k].tolist() for k in (2, 0, 3, 0)]
    assert orders[1].dtype == np.int64
    with pytest.raises(IndexError):
        orders[4]
    endless = L.epoch_orders(10 ** 6, 10 ** 12, 0)      # (10**12, 10**6) would never fit
    assert len(endless) == 10 ** 12 and endless[1].shape == (10 ** 6,)


def test_a_huge_epoch_count_starts_training_at_once():
    w = with_config(make_workload("light"), epochs=10 ** 12)

    class Enough(Exception):
        pass

    def stop_after_two(epoch, seconds):
        if epoch == 1:
            raise Enough

    with pytest.raises(Enough):
        L.train(w.initial_params(), w.data, w.config, progress=stop_after_two)


def damaged_checkpoints(folder):
    """name -> path of a checkpoint that load_params must refuse with one sentence."""
    good = folder / "good.npz"
    L.save_params(good, L.init_params(3, 4, 2))
    raw = good.read_bytes()
    paths = {}
    for name, cut in (("truncated at 0", 0), ("truncated at 10", 10), ("truncated at half", len(raw) // 2),
                      ("truncated by 1", len(raw) - 1)):
        paths[name] = folder / f"cut{cut}.npz"
        paths[name].write_bytes(raw[:cut])
    paths["text"] = folder / "text.npz"
    paths["text"].write_text("W_ih,W_hh\n1,2\n")
    paths["zip of text"] = folder / "other.npz"
    with zipfile.ZipFile(paths["zip of text"], "w") as archive:
        for name in L.params.NAMES:
            archive.writestr(f"{name}.npy", "not an array")
    paths["one array"] = folder / "array.npz"
    with open(paths["one array"], "wb") as handle:
        np.save(handle, np.zeros(3))
    empty = {name: np.zeros(shape) for name, shape in L.shapes_for(3, 0, 2).items()}
    paths["H=0"] = folder / "h0.npz"
    np.savez(paths["H=0"], **empty)
    diverged = dict(L.init_params(3, 4, 2).items())
    diverged["W_hh"][1, 2] = np.nan
    paths["NaN"] = folder / "nan.npz"
    np.savez(paths["NaN"], **diverged)
    paths["folder"] = folder
    paths["device"] = "/dev/zero"
    return paths


def test_damaged_or_foreign_checkpoints_are_one_sentence(tmp_path):
    expected = {"truncated at 0": "is empty", "truncated at 10": "not a complete .npz archive",
                "truncated at half": "not a complete .npz archive", "truncated by 1": "not a complete .npz archive",
                "text": "not a complete .npz archive", "zip of text": "member W_ih is not a NumPy array",
                "one array": "holds a single array", "H=0": r"empty model, \(D, H, Y\) = \(3, 0, 2\)",
                "NaN": "W_hh holds NaN", "folder": "is a folder", "device": "not a regular file"}
    for name, path in damaged_checkpoints(tmp_path).items():
        with pytest.raises(L.UserError, match=expected[name]) as info:
            L.load_params(path)
        assert str(path) in one_sentence(info), name


# ---------------------------------------------------------------- 4. the reference's entry points check their input

ENTRY_POINTS = {
    "loss_and_grads": lambda p, X, Y, task: L.loss_and_grads(p, X, Y, task),
    "loss_only": lambda p, X, Y, task: L.loss_only(p, X, Y, task),
    "predict": lambda p, X, Y, task: L.predict(p, X, task),
}
BAD_BATCHES = {
    "class id -1": (np.zeros((2, 4, 3)), np.array([[0, 1, 2, -1]] * 2), "classification", "class ids outside 0..2"),
    "class id 3": (np.zeros((2, 4, 3)), np.full((2, 4), 3), "classification", "class ids outside 0..2"),
    "wrong D": (np.zeros((2, 4, 5)), np.zeros((2, 4), int), "classification", r"X must have shape \(N, T, 3\)"),
    "2-D X": (np.zeros((4, 3)), np.zeros((4, 3)), "regression", r"X must have shape \(N, T, 3\)"),
    "empty batch": (np.zeros((0, 4, 3)), np.zeros((0, 3)), "regression", "X is empty"),
    "no steps": (np.zeros((2, 0, 3)), np.zeros((2, 3)), "regression", "X is empty"),
    "NaN in X": (np.where(np.arange(24).reshape(2, 4, 3) == 13, np.nan, 0.0), np.zeros((2, 3)), "regression",
                 r"X holds nan at index \(1, 0, 1\)"),
    "text X": (np.full((2, 4, 3), "a"), np.zeros((2, 3)), "regression", "X must hold real numbers"),
    "unknown task": (np.zeros((2, 4, 3)), np.zeros((2, 3)), "forecasting", "unknown task 'forecasting'"),
}


@pytest.mark.parametrize("entry,batch", [(entry, batch) for entry in ENTRY_POINTS for batch in BAD_BATCHES
                                         if not (entry == "predict" and batch.startswith("class id"))])  # no targets
def test_a_bad_batch_is_one_sentence_at_every_entry_point(entry, batch):
    X, Y, task, expected = BAD_BATCHES[batch]
    params = L.init_params(3, 5, 3, seed=0)
    with pytest.raises(L.UserError, match=expected) as info:
        ENTRY_POINTS[entry](params, X, Y, task)
    one_sentence(info)


def test_a_bad_regression_target_is_one_sentence():
    params = L.init_params(3, 5, 3, seed=0)
    with pytest.raises(L.UserError, match=r"Y holds inf at index \(1, 2\)"):
        L.loss_and_grads(params, np.zeros((2, 4, 3)), np.array([[0, 0, 0], [0, 0, np.inf]]), "regression")
    with pytest.raises(L.UserError, match=r"Y must have shape \(2, 3\) for regression"):
        L.loss_only(params, np.zeros((2, 4, 3)), np.zeros((3, 3)), "regression")


# ---------------------------------------------------------------- 5. divergence and bad data named for what they are

@pytest.mark.parametrize("workload", ["light", "seed"])
def test_an_exploding_but_finite_loss_stops_training(workload):
    w = with_config(make_workload(workload, epochs=3), lr=1e6)
    with pytest.raises(L.ExplodingLossError, match=r"epoch 0, minibatch 1 is [\d.e+]+, more than 10000 times") as info:
        L.train(w.initial_params(), w.data, w.config)
    assert "lower the learning rate or set clip_norm" in one_sentence(info)
    assert isinstance(info.value, L.NonFiniteLossError) and (info.value.epoch, info.value.minibatch) == (0, 1)


def test_the_divergence_rule_spares_a_loss_that_starts_near_zero():
    # From a near-perfect start a loss may rise many times over without diverging: the floor of 1 keeps it running.
    L.contract.check_divergence(np.array([1e-6, 0.5, 3.0]), 0.1, 0, first_loss=1e-6)
    with pytest.raises(L.ExplodingLossError, match="minibatch 2"):
        L.contract.check_divergence(np.array([1e-6, 0.5, 2e4]), 0.1, 0, first_loss=1e-6)


@pytest.mark.parametrize("series,expected", [
    (np.full(144, 112.0), "the series is constant"),
    (100 * 1.01 ** np.arange(144.0), "changes by the same factor every month"),
])
@pytest.mark.parametrize("workload", ["seed", "light"])
def test_a_series_without_variation_is_named_before_training(workload, series, expected):
    if workload == "seed" and expected.startswith("changes"):
        expected = "distinct classes"           # the seed pipeline has no logarithm: its changes still vary
        series = np.r_[np.full(72, 112.0), np.full(72, 130.0)]
    with pytest.raises(L.UserError, match=expected) as info:
        make_workload(workload, series=series)
    assert "no variation" in one_sentence(info) or "vary more" in str(info.value)


@pytest.mark.parametrize("where,expected", [
    ("X_train", r"X_train holds nan at index \(5, 3, 0\)"),
    ("Y_valid", r"Y_valid holds inf at index \(2, 0\)"),
])
def test_nan_or_inf_in_the_data_is_named_before_training(where, expected):
    w = make_workload("light")
    arrays = w.data._asdict()
    arrays[where] = arrays[where].copy()
    arrays[where][(5, 3, 0) if where == "X_train" else (2, 0)] = np.nan if where == "X_train" else np.inf
    epochs_run = []
    with pytest.raises(L.UserError, match=expected):
        L.train(w.initial_params(), L.Dataset(**arrays), w.config, progress=lambda *a: epochs_run.append(a))
    assert not epochs_run


def test_a_non_finite_series_is_named_by_the_pipelines():
    series = 100 + 10 * np.sin(np.arange(144.0))
    series[20] = np.nan
    for make in (lambda: LightPipeline.fit(series), lambda: seed_dataset(series)):
        with pytest.raises(L.UserError, match="value 20 of the series is nan"):
            make()


@pytest.mark.parametrize("backend", ["numba_cpu", "numba_cuda"])
@pytest.mark.parametrize("batch", [name for name in BAD_BATCHES if name != "unknown task"])
def test_every_backend_checks_a_bad_batch_with_the_shared_sentence(backend, batch):
    """The backends' own entry points go through the same check_batch (numba_cuda here on the simulator:
    the check comes before any kernel)."""
    module = L.get_backend(backend)
    X, Y, task, expected = BAD_BATCHES[batch]
    params = L.init_params(3, 5, 3, seed=0)
    with pytest.raises(L.UserError, match=expected) as info:
        module.loss_and_grads(params, X, Y, task)
    one_sentence(info)
    if not batch.startswith("class id"):
        with pytest.raises(L.UserError, match=expected):
            module.predict(params, X, task)
