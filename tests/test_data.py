"""The shipped data, the workload pipelines and the bad-input messages."""
import hashlib
import importlib.resources

import numpy as np
import pytest

from parallel_lstm.data import LightPipeline, airpassengers, load_series, make_workload, seed_dataset, synthetic_windows
from parallel_lstm.data.seed import envelope, kmeans_1d
from parallel_lstm.lstm_numpy import TrainConfig, UserError, init_params

SHA256 = "29a86cac504338c7c5607e721396e4bda240ca61785ffcac9ed1af4088199d42"


def test_airpassengers_is_the_published_series():
    raw = importlib.resources.files("parallel_lstm.data").joinpath("AirPassengers.csv").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SHA256
    p = airpassengers()
    assert p.shape == (144,)
    assert (p[0], p[-1], p.min(), p.max(), p.sum()) == (112, 432, 104, 622, 40363)


def test_seed_pipeline_matches_the_original_project():
    (X_tr, Y_tr, X_va, Y_va, X_te, Y_te), s = seed_dataset(airpassengers())
    assert s.change.shape == s.normalised.shape == s.classes.shape == (143,)
    assert np.array_equal(s.change, np.diff(s.passengers))
    np.testing.assert_allclose(s.centroids, [-0.754, 0.060, 0.763], atol=1e-3)
    assert np.bincount(s.classes).tolist() == [43, 56, 44]
    assert (X_tr.shape, X_va.shape, X_te.shape) == ((59, 11, 3), (7, 11, 3), (7, 11, 3))
    assert Y_tr.shape == (59, 11) and Y_tr.dtype.kind == "i"
    # Inputs are one-hot tokens 0..10 of a window and targets are tokens 1..11 of the same window.
    assert np.array_equal(X_tr.sum(axis=2), np.ones((59, 11)))
    assert np.array_equal(X_tr[:, 1:].argmax(axis=2), Y_tr[:, :-1])


def test_envelope_widens_with_time_and_differs_for_falls():
    change = np.array([5.0, -5.0, 0.0, -1.0])
    np.testing.assert_array_equal(envelope(change), [15.0, 7.6, 16.0, 8.8])


def test_kmeans_1d_finds_separated_clusters():
    values = np.array([-5.0, -5.2, -4.8, 0.1, -0.1, 4.0, 4.4])
    labels, centroids = kmeans_1d(values)
    assert labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(centroids, [-5.0, 0.0, 4.2])


def test_light_split_is_by_target_month_and_scaled_with_training_months_only():
    p = airpassengers()
    pipe = LightPipeline.fit(p)
    X_tr, Y_tr, X_va, Y_va, X_te, Y_te = pipe.split()
    assert (X_tr.shape, X_va.shape, X_te.shape) == ((95, 12, 1), (12, 12, 1), (24, 12, 1))
    months = pipe.target_months
    assert months[-24] == 120 and months[-36] == 108 and months[0] == 13
    # Changing the validation and test months must not change the scaling.
    altered = p.copy()
    altered[108:] *= 3
    assert (LightPipeline.fit(altered).mean, LightPipeline.fit(altered).std) == (pipe.mean, pipe.std)
    # The last training target is the change into month 107.
    assert Y_tr[-1, 0] == pytest.approx((np.log(p[107]) - np.log(p[106]) - pipe.mean) / pipe.std)


def test_light_inverse_rebuilds_passengers_exactly():
    p = airpassengers()
    pipe = LightPipeline.fit(p)
    X, Y = pipe.windows()
    months = pipe.target_months
    np.testing.assert_allclose(pipe.to_levels(Y[:, 0], p, months), p[months], rtol=1e-12)
    # A perfect model gives the actual values one step ahead and recursively.
    by_window = {tuple(x[:, 0]): y for x, y in zip(X, Y[:, 0])}
    oracle = lambda windows: np.array([[by_window[tuple(w[:, 0])]] for w in windows])  # noqa: E731
    np.testing.assert_allclose(pipe.one_step(oracle, months[-24:]), p[120:], rtol=1e-12)
    np.testing.assert_allclose(pipe.recursive(oracle, 120, 24), p[120:], rtol=1e-10)


def test_synthetic_windows_are_deterministic_and_sized():
    a = synthetic_windows(90, 7, seed=1)
    b = synthetic_windows(90, 7, seed=1)
    c = synthetic_windows(90, 7, seed=2)
    assert [x.shape for x in a] == [(90, 7, 1), (90, 1), (10, 7, 1), (10, 1)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # Each target is the value right after its window.
    assert a[1][0, 0] == a[0][1, -1, 0]


def test_workloads_have_the_documented_shapes():
    assert make_workload("seed").shapes == {"N_train": 59, "N_valid": 7, "T": 11, "D": 3, "H": 50, "Y": 3, "B": 7}
    assert make_workload("light").shapes == {"N_train": 95, "N_valid": 12, "T": 12, "D": 1, "H": 16, "Y": 1, "B": 16}
    heavy = make_workload("heavy")
    assert heavy.shapes == {"N_train": 4096, "N_valid": 455, "T": 32, "D": 1, "H": 128, "Y": 1, "B": 128}
    assert make_workload("gpu", samples=64, seq_len=8).shapes["H"] == 512


# ---- bad input: one sentence that names the problem ----

def write(tmp_path, text):
    path = tmp_path / "series.csv"
    path.write_text(text)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_series(tmp_path / "nope.csv", "x")


def test_missing_column_lists_the_columns(tmp_path):
    path = write(tmp_path, "Month,Passengers\n1949-01,112\n")
    with pytest.raises(UserError, match=r"no column 'Count'; its columns are: Month, Passengers"):
        load_series(path, "Count")


def test_non_numeric_values_name_the_lines(tmp_path):
    path = write(tmp_path, "x\n1\n2\nabc\n4\n")
    with pytest.raises(UserError, match=r"non-numeric values on line\(s\) 4"):
        load_series(path, "x")


def test_missing_values_name_the_lines(tmp_path):
    path = write(tmp_path, "t,x\n1,1\n2,\n3,3\n")
    with pytest.raises(UserError, match=r"missing values on line\(s\) 3"):
        load_series(path, "x")


def test_a_csv_column_replaces_airpassengers(tmp_path):
    values = 100 + 10 * np.sin(np.arange(80))
    path = write(tmp_path, "v\n" + "\n".join(f"{v:.6f}" for v in values) + "\n")
    series = load_series(path, "v")
    np.testing.assert_allclose(series, values, atol=1e-6)
    assert make_workload("light", series=series).shapes["N_train"] == 80 - 1 - 12 - 12 - 24


def test_series_too_short_for_the_window():
    with pytest.raises(UserError, match="need at least 50"):
        make_workload("light", series=np.arange(1.0, 40.0))
    with pytest.raises(UserError, match="at least 14"):
        make_workload("seed", series=np.arange(1.0, 10.0))


def test_the_log_transform_needs_positive_values():
    with pytest.raises(UserError, match="log transform needs positive values, but value 60 of the series is 0"):
        LightPipeline.fit(np.r_[np.ones(60), 0.0], transform="log")


@pytest.mark.parametrize("make", [
    lambda: make_workload("heavy", hidden=0),
    lambda: make_workload("heavy", samples=-5),
    lambda: make_workload("light", batch_size=-1),
    lambda: TrainConfig(epochs=0),
    lambda: TrainConfig(lr=-0.1),
    lambda: init_params(3, 0, 1),
])
def test_non_positive_sizes_are_rejected(make):
    with pytest.raises(UserError, match="must be a positive"):
        make()


def test_unknown_workload():
    with pytest.raises(UserError, match="unknown workload 'huge'; choose from seed, light, heavy, gpu"):
        make_workload("huge")
