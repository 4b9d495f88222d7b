"""The light pipeline's transform (auto, log, none): chosen, recorded and undone exactly."""
import numpy as np
import pytest

from parallel_lstm.data import LightPipeline, airpassengers, make_workload
from parallel_lstm.data.light import choose_transform, transformed, untransformed
from parallel_lstm.lstm_numpy import UserError, predict as predict_batch, train
from parallel_lstm.reports.forecast import forecast_run

MONTHS = np.arange(150)
# A count with empty months (clipped at zero, as sunspots) and an anomaly that crosses zero.
WITH_ZEROS = np.maximum(0.0, np.round(60 * np.sin(MONTHS / 8) + 0.3 * MONTHS))
WITH_NEGATIVES = 0.5 * np.sin(MONTHS / 5) + 0.01 * MONTHS - 0.8


def test_the_series_have_what_their_names_say():
    assert (WITH_ZEROS == 0).sum() > 10 and WITH_ZEROS.min() == 0
    assert (WITH_NEGATIVES < 0).sum() > 10 and (WITH_NEGATIVES > 0).sum() > 10


@pytest.mark.parametrize("series, transform, used", [
    (airpassengers(), "auto", "log"), (WITH_ZEROS, "auto", "none"), (WITH_NEGATIVES, "auto", "none"),
    (airpassengers(), "none", "none"), (airpassengers(), "log", "log"),
])
def test_auto_takes_logarithms_only_of_positive_series_and_the_pipeline_records_it(series, transform, used):
    pipe = make_workload("light", series=series, transform=transform, epochs=1).pipeline
    assert pipe.transform == used
    assert pipe.transform_reason == ("as asked" if transform != "auto" else
                                     "auto: every value is positive" if used == "log" else pipe.transform_reason)
    np.testing.assert_array_equal(pipe.change, np.diff(np.log(series) if used == "log" else series))


def test_auto_says_which_value_ruled_out_the_logarithm():
    assert choose_transform(WITH_NEGATIVES) == ("none", f"auto: value 0 is {WITH_NEGATIVES[0]:g}, so no logarithm")
    first_zero = int(np.flatnonzero(WITH_ZEROS == 0)[0])
    assert choose_transform(WITH_ZEROS) == ("none", f"auto: value {first_zero} is 0, so no logarithm")


@pytest.mark.parametrize("series", [airpassengers(), WITH_ZEROS, WITH_NEGATIVES], ids=["positive", "zeros", "negatives"])
def test_transform_then_undo_gives_the_series_back(series):
    used, _ = choose_transform(series)
    np.testing.assert_allclose(untransformed(transformed(series, used), used), series, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("series", [WITH_ZEROS, WITH_NEGATIVES], ids=["zeros", "negatives"])
def test_forecasts_of_the_true_changes_give_the_true_values(series):
    pipe = LightPipeline.fit(series)
    X, Y = pipe.windows()
    months = pipe.target_months
    np.testing.assert_allclose(pipe.to_levels(Y[:, 0], series, months), series[months], rtol=1e-12, atol=1e-12)
    by_window = {tuple(x[:, 0]): y for x, y in zip(X, Y[:, 0])}
    oracle = lambda windows: np.array([[by_window[tuple(w[:, 0])]] for w in windows])  # noqa: E731
    np.testing.assert_allclose(pipe.one_step(oracle, months[-24:]), series[-24:], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pipe.recursive(oracle, series.size - 24, 24), series[-24:], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("series", [WITH_ZEROS, WITH_NEGATIVES], ids=["zeros", "negatives"])
def test_a_model_trained_on_a_series_with_zeros_or_negatives_forecasts_in_its_units(series):
    workload = make_workload("light", series=series, epochs=3)
    params = train(workload.initial_params(), workload.data, workload.config).params
    predict = lambda X: predict_batch(params, X, "regression")  # noqa: E731
    pipe, (X_test, _) = workload.pipeline, workload.test
    first = series.size - 24
    # Undone by hand: without logarithms a forecast is the last value plus the unscaled change.
    by_hand = series[first - 1:-1] + predict(X_test)[:, 0] * pipe.std + pipe.mean
    np.testing.assert_allclose(pipe.one_step(predict, np.arange(first, series.size)), by_hand, rtol=1e-12)
    assert pipe.recursive(predict, first, 24)[0] == pytest.approx(by_hand[0], rel=1e-12)
    run = forecast_run(seed=0, series=series, epochs=3)
    np.testing.assert_array_equal(run.one_step, pipe.one_step(predict, np.arange(first, series.size)))
    assert np.isfinite(run.metrics["one-step"]["RMSE"]) and np.isfinite(run.metrics["24-step"]["MASE"])


def test_unknown_transforms_and_transforms_of_other_workloads_are_refused():
    with pytest.raises(UserError, match="unknown transform 'sqrt'; choose from auto, log, none"):
        make_workload("light", transform="sqrt")
    with pytest.raises(UserError, match="the seed workload has no transform; --transform applies to light only"):
        make_workload("seed", transform="none")


def test_a_series_that_grows_by_the_same_amount_has_no_variation_to_scale_without_logarithms():
    with pytest.raises(UserError, match="changes by the same amount every month"):
        LightPipeline.fit(np.arange(-20.0, 60.0))
    with pytest.raises(UserError, match="changes by the same factor every month"):
        LightPipeline.fit(1.01 ** np.arange(80.0))


def test_the_harness_takes_transform_and_says_which(tmp_path, capsys):
    from parallel_lstm import run_comparison
    series = tmp_path / "counts.csv"
    series.write_text("month,count\n" + "".join(f"{i},{(i * 7) % 23}\n" for i in range(80)))   # zeros in it
    argv = ["--workload", "light", "--data", str(series), "--column", "count", "--epochs", "1", "--backends",
            "numpy", "--repeats", "1", "--out", str(tmp_path / "out")]
    assert run_comparison.main(argv) == 0
    assert "light transform: none (auto:" in capsys.readouterr().out
    assert run_comparison.main(argv + ["--transform", "log"]) == 2
    assert run_comparison.main(["--workload", "seed", "--transform", "none", "--out", str(tmp_path / "o2")]) == 2
    assert "applies to light only" in capsys.readouterr().err



# The difference lags: 12 is the change from the same month last year, (1, 12) the airline model's.

@pytest.mark.parametrize("lags, K", [(12, 12), ((1, 12), 13)], ids=["12", "1,12"])
@pytest.mark.parametrize("series", [airpassengers(), WITH_NEGATIVES], ids=["log", "none"])
def test_seasonal_differences_are_undone_exactly_one_step_and_recursively(series, lags, K):
    pipe = LightPipeline.fit(series, difference=lags)
    z = np.log(series) if pipe.transform == "log" else series
    by_hand = z[12:] - z[:-12] if lags == 12 else (z[13:] - z[12:-1]) - (z[1:-12] - z[:-13])
    np.testing.assert_allclose(pipe.change, by_hand, rtol=1e-13, atol=1e-13)
    X, Y = pipe.windows()
    months = pipe.target_months
    assert months[0] == 12 + K and X.shape == (series.size - 12 - K, 12, 1)
    # Each window ends with the change into the month before its target.
    np.testing.assert_array_equal(X[:, -1, 0], pipe.scaled[np.arange(months.size) + 11])
    np.testing.assert_allclose(pipe.to_levels(Y[:, 0], series, months), series[months], rtol=1e-12, atol=1e-12)
    by_window = {tuple(x[:, 0]): y for x, y in zip(X, Y[:, 0])}
    oracle = lambda windows: np.array([[by_window[tuple(w[:, 0])]] for w in windows])  # noqa: E731
    first = series.size - 24
    np.testing.assert_allclose(pipe.one_step(oracle, np.arange(first, series.size)), series[first:],
                               rtol=1e-12, atol=1e-12)
    # 24 steps from month first-1: the bases of months first+12.. are forecasts themselves.
    np.testing.assert_allclose(pipe.recursive(oracle, first, 24), series[first:], rtol=1e-10, atol=1e-10)


def test_a_recursive_seasonal_forecast_builds_on_the_levels_a_year_before():
    series = airpassengers()
    changes = np.linspace(-1, 1, 24)
    for lags in (12, (1, 12)):
        pipe = LightPipeline.fit(series, difference=lags)
        steps = iter(changes)
        f = pipe.recursive(lambda windows: np.array([[next(steps)]]), 120, 24)
        factor = np.exp(changes * pipe.std + pipe.mean)
        p = np.r_[series[:120], f]           # actual months, then the forecasts
        m = np.arange(120, 144)
        # Lag 12: P[m] = P[m-12] * factor; lags 1 and 12: P[m] = P[m-1] * P[m-12] / P[m-13] * factor.
        base = p[m - 12] if lags == 12 else p[m - 1] * p[m - 12] / p[m - 13]
        np.testing.assert_allclose(f, base * factor, rtol=1e-12)


def test_the_difference_lags_set_the_split_and_lag_one_is_the_default():
    one, year, both = (make_workload("light", epochs=1, difference=d) for d in (None, 12, (1, 12)))
    assert (one.pipeline.difference, year.pipeline.difference, both.pipeline.difference) == ((1,), (12,), (1, 12))
    assert [w.shapes["N_train"] for w in (one, year, both)] == [144 - 1 - 12 - 36, 144 - 12 - 12 - 36, 144 - 13 - 12 - 36]
    np.testing.assert_array_equal(one.data.X_train, make_workload("light", epochs=1, difference=1).data.X_train)


@pytest.mark.parametrize("lags", [0, -12, 1.5, "12", True, (), (1, 0)])
def test_a_bad_difference_lag_is_refused_in_one_sentence(lags):
    with pytest.raises(UserError, match=r"^the difference lags must be whole numbers of months of at least 1 "
                                        r"\(1: from last month, 12: from the same month last year, \(1, 12\): both\), "
                                        r"got .+\.$"):
        make_workload("light", difference=lags)


def test_lags_too_long_for_the_series_or_another_workload_are_refused():
    with pytest.raises(UserError, match="windows of 12 of changes over 1\\+12 months with 12 validation and 24 "
                                        "test months need at least 62; give a longer series or a shorter window"):
        LightPipeline.fit(airpassengers()[:61], difference=(1, 12))
    LightPipeline.fit(airpassengers()[:62], difference=(1, 12))   # one training window
    with pytest.raises(UserError, match="the heavy workload takes no difference lag; difference applies to light only"):
        make_workload("heavy", difference=12)
    # Growth by the same factor every year: the yearly change has no variation.
    with pytest.raises(UserError, match="changes by the same factor over every 12 months over its first 48 values"):
        LightPipeline.fit(np.tile(np.arange(1.0, 13.0), 7) * 1.05 ** np.repeat(np.arange(7.0), 12), difference=12)
