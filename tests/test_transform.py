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
    np.testing.assert_allclose(pipe.to_levels(Y[:, 0], series[months - 1]), series[months], rtol=1e-12, atol=1e-12)
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
