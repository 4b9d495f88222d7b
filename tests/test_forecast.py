"""Forecast metrics against hand-computed values, baselines against their definitions, early stopping,
the ensemble, the report section and the backtest."""
import os
import sys

import numpy as np
import pytest

from parallel_lstm import lstm_numpy
from parallel_lstm.data import airpassengers, make_workload
from parallel_lstm.reports import backtest
from parallel_lstm.reports.forecast import (ForecastRun, ensemble_forecast, forecast_data, forecast_markdown,
                              forecast_run, forecast_section, metrics, persistence, rmse_spread, seasonal_naive,
                              train_for_forecast)
from parallel_lstm.reports.forecast import goals_line, main as forecast_main


def test_metrics_by_hand():
    # In-sample months 12..19 of s[m] = m/3 all change by exactly 4 over a year: the MASE scale is 4.
    series = np.arange(23) / 3
    m = metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]), series, first_test=20)
    # errors -1, 0, -2
    assert m["RMSE"] == pytest.approx(np.sqrt(5 / 3), rel=1e-15)
    assert m["MAE"] == pytest.approx(1.0, rel=1e-15)
    assert m["MAPE"] == pytest.approx(100 * (0.5 + 0 + 0.4) / 3, rel=1e-15)
    assert m["MASE"] == pytest.approx(0.25, rel=1e-15)


def test_baselines_follow_their_definitions():
    series = np.arange(40.0) ** 1.5
    p = persistence(series, first=30, horizon=6)
    s = seasonal_naive(series, first=30, horizon=14)
    np.testing.assert_array_equal(p["one-step"], series[29:35])
    np.testing.assert_array_equal(p["24-step"], np.full(6, series[29]))
    np.testing.assert_array_equal(s["one-step"], series[18:32])
    np.testing.assert_array_equal(s["24-step"], np.r_[series[18:30], series[18:20]])


def naive_metrics(series):
    return {name: {h: metrics(f, series[120:], series) for h, f in make(series).items()}
            for name, make in (("persistence", persistence), ("seasonal naive", seasonal_naive))}


def test_baselines_reproduce_the_published_airpassengers_figures():
    b = naive_metrics(airpassengers())
    assert round(b["seasonal naive"]["one-step"]["RMSE"], 1) == 50.0
    assert round(b["seasonal naive"]["24-step"]["RMSE"], 1) == 77.0
    assert round(b["persistence"]["one-step"]["RMSE"], 1) == 51.8
    assert b["seasonal naive"]["one-step"]["MASE"] == pytest.approx(
        b["seasonal naive"]["one-step"]["MAE"] / np.mean(np.abs(airpassengers()[12:120] - airpassengers()[:108])))


def test_a_forecast_run_forecasts_the_test_months_in_passengers():
    run = forecast_run(seed=0, epochs=3)
    assert run.one_step.shape == run.recursive.shape == (24,)
    actual = airpassengers()[120:]
    assert run.metrics["one-step"]["RMSE"] == pytest.approx(np.sqrt(np.mean((run.one_step - actual) ** 2)))
    # Even an almost untrained model stays in the range of the series: the inverse transform is right.
    assert 200 < run.one_step.min() and run.one_step.max() < 800


def test_early_stopping_keeps_the_epoch_with_the_lowest_validation_loss():
    workload = make_workload("light", hidden=4, epochs=8, lr=0.5)   # measured: the lowest validation loss is epoch 7's
    full = train_for_forecast(workload, lstm_numpy, early_stopping=False)
    kept = train_for_forecast(workload, lstm_numpy, early_stopping=True)
    best = int(np.argmin(full.valid_loss)) + 1
    assert len(full.train_loss) == 8 and 1 < best < 8
    # The retrained run follows the full run exactly up to the kept epoch.
    assert kept.train_loss == full.train_loss[:best] and kept.valid_loss == full.valid_loss[:best]
    assert kept.valid_loss[-1] == min(full.valid_loss)


def fake_run(seed, one_step, recursive):
    metrics_of = lambda f: {"RMSE": float(f[0]), "MAE": 0.0, "MAPE": 0.0, "MASE": 0.0}  # noqa: E731
    return ForecastRun(seed, np.array(one_step, float), np.array(recursive, float),
                       {"one-step": metrics_of(one_step), "24-step": metrics_of(recursive)}, [1.0], [1.0], "log")


def test_the_ensemble_is_the_seeds_median_month_by_month_and_the_spread_their_range():
    runs = [fake_run(0, [1, 10], [5, 0]), fake_run(1, [3, 20], [7, 9]), fake_run(2, [2, 90], [6, 4])]
    ensemble = ensemble_forecast(runs)
    np.testing.assert_array_equal(ensemble["one-step"], [2, 20])
    np.testing.assert_array_equal(ensemble["24-step"], [6, 4])
    assert rmse_spread(runs) == {"one-step": {"min": 1.0, "median": 2.0, "max": 3.0},
                                 "24-step": {"min": 5.0, "median": 6.0, "max": 7.0}}


@pytest.fixture(scope="module")
def short_forecast():
    return forecast_data(seeds=2, epochs=3)


def test_the_forecast_section_scores_every_method_on_the_test_months(short_forecast):
    data = short_forecast
    assert [r.seed for r in data["runs"]] == [0, 1]
    actual = airpassengers()[120:]
    ensemble = "LSTM ensemble (median of 2 seeds' forecasts)"
    assert data["metrics"][ensemble]["24-step"]["RMSE"] == pytest.approx(
        np.sqrt(np.mean((np.median([r.recursive for r in data["runs"]], axis=0) - actual) ** 2)), rel=1e-12)
    assert data["metrics"]["seasonal naive"] == naive_metrics(airpassengers())["seasonal naive"]
    text = "\n".join(forecast_markdown(data))
    assert f"| {ensemble} | one-step | {data['metrics'][ensemble]['one-step']['RMSE']:.1f} |" in text
    assert f"| LSTM, median of 2 seeds' metrics | 24-step | {data['median']['24-step']['RMSE']:.1f} |" in text
    assert f"the 24-step RMSE from {data['spread']['24-step']['min']:.1f} to" in text
    assert "transform log" in text and text.count("\n| 1 | ") == 1   # one row per seed



def test_the_section_names_the_classical_baselines_when_statsmodels_computed_them(short_forecast):
    pytest.importorskip("statsmodels")
    text = "\n".join(forecast_markdown(short_forecast))
    assert "| Holt-Winters (additive trend, multiplicative season) | 24-step | 32.5 |" in text
    assert "| airline model ARIMA(0,1,1)(0,1,1)12 on log | one-step | 15.3 |" in text
    assert "not computed" not in text and "published" not in text


def test_without_statsmodels_the_section_says_the_classical_baselines_were_not_computed(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels", None)   # makes "import statsmodels" raise ImportError
    data = forecast_data(seeds=1, epochs=2)
    text = "\n".join(forecast_markdown(data))
    assert data["classical"] is None and "Holt-Winters" not in data["metrics"]
    assert "Holt-Winters and the airline model were not computed: they need statsmodels" in text
    assert "| airline" not in text


def test_the_forecast_section_draws_its_figure(tmp_path):
    lines, drawn = forecast_section(tmp_path, seeds=2, overrides={"epochs": 2})
    assert [d.name for d in drawn] == ["forecast"]
    assert sorted(os.path.basename(p) for p in drawn[0].paths) == ["forecast.pdf", "forecast.png"]
    assert (tmp_path / "forecast.png").stat().st_size > 15_000 and "![forecast figure](figures/forecast.png)" in lines


def test_the_backtest_scores_inside_the_pre_test_months(monkeypatch):
    from parallel_lstm.reports import forecast as forecast
    seen = []
    real = forecast.make_workload

    def spy(name, **kw):
        seen.append(kw["series"].size)
        return real(name, **kw)

    monkeypatch.setattr(forecast, "make_workload", spy)
    result = backtest.backtest_score({"epochs": 2}, seeds=[0, 1], backend="numpy")
    assert seen == [120, 120], "the backtest must never see the 24 test months"
    assert result["score"] == pytest.approx(result["one-step"] + result["24-step"])
    assert result["one-step"] > 0 and result["ensemble"]["24-step"] > 0


def fake_score(setting):
    """Lowest for hidden 8, lr 0.2; the 24-month window helps, the other stage-2 changes do not."""
    total = (setting["hidden"] == 16) + (setting["lr"] == 0.1) + 0.5 * setting["early_stopping"] \
        - 0.25 * (setting.get("seq_len") == 24) + 3 * ("transform" in setting or "clip_norm" in setting)
    return {"one-step": total, "24-step": 0.0, "score": total, "ensemble": {"one-step": 0.0, "24-step": 0.0}}


def test_the_backtest_search_keeps_the_best_grid_setting_and_only_changes_that_help():
    def score(setting):   # lowest for hidden 8, lr 0.2, equal for both caps; the 24-month window helps, nothing else
        total = (setting["hidden"] == 16) + (setting["lr"] == 0.1) + 0.5 * (not setting["early_stopping"]) \
            - 0.25 * (setting.get("seq_len") == 24) + 3 * ("transform" in setting or "clip_norm" in setting)
        return {"one-step": total, "24-step": 0.0, "score": total, "ensemble": {"one-step": 0.0, "24-step": 0.0}}
    lines = []
    chosen, result = backtest.search(score, echo=lines.append)
    assert chosen == {"difference": (1,), "hidden": 8, "lr": 0.2, "batch_size": 8, "forget_bias": 0.0, "epochs": 300,
                      "early_stopping": True, "seq_len": 24}, "ties (300 or 600 epochs, either lags) go to the first"
    assert result["score"] == -0.25
    assert len(lines) == 1 + len(backtest.grid_settings()) + 1 + len(backtest.CHANGES) + 1
    assert len(backtest.grid_settings()) == 96 and lines[-1].startswith("chosen: difference (1,), hidden 8, lr 0.2")


def test_the_backtest_help_answers_without_searching(monkeypatch, capsys):
    monkeypatch.setattr(backtest, "search", lambda *a, **k: pytest.fail("--help started the search"))
    assert backtest.main(["--help"]) == 0 and "usage: parallel-lstm backtest" in capsys.readouterr().out


def test_the_backtest_refuses_an_unknown_backend_before_searching(monkeypatch, capsys):
    monkeypatch.setattr(backtest, "search", lambda *a, **k: pytest.fail("the search started"))
    assert backtest.main(["--backend", "abacus"]) == 2
    assert capsys.readouterr().err.startswith("parallel-lstm backtest: error: unknown backend 'abacus'")


def test_the_backtest_stopped_by_ctrl_c_keeps_what_it_printed_and_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(backtest, "search", interrupted)
    assert backtest.main([]) == 130
    assert capsys.readouterr().err == "parallel-lstm backtest: interrupted (Ctrl-C); the scores printed so far stand\n"


def test_the_forecast_section_says_whether_the_goals_are_reached():
    reached = {"one-step": {"RMSE": 16.96}, "24-step": {"RMSE": 30.04}}
    assert goals_line(reached, 10) == ("Goals for the 10-seed median RMSE: one-step 17.0 against at most 17 "
                                       "(reached); 24-step 30.0 against at most 30 (not reached).")


def write_column(path, name, values):
    path.write_text(f"year,{name}\n" + "".join(f"{1700 + i},{float(v)!r}\n" for i, v in enumerate(values)))
    return path


def sunspots():
    """Yearly sunspot numbers 1700-2008 as statsmodels ships them: a real series with zero years."""
    datasets = pytest.importorskip("statsmodels.datasets.sunspots", reason="the real series comes with statsmodels")
    return datasets.load_pandas().data["SUNACTIVITY"].to_numpy(dtype=np.float64)


@pytest.mark.parametrize("source", ["synthetic", "sunspots"])
def test_the_forecast_command_trains_and_forecasts_a_series_with_zeros(tmp_path, capsys, source):
    months = np.arange(150)
    values = (sunspots() if source == "sunspots"
              else np.maximum(0.0, np.round(60 * np.sin(months / 8) + 0.3 * months)))
    assert (values == 0).sum() >= 3
    path = write_column(tmp_path / "series.csv", "count", values)
    assert forecast_main(["--data", str(path), "--column", "count", "--seeds", "2", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{values.size} values; transform none; the last 24 held out" in out
    # the command's table is the one forecast_data computes for the same series and settings
    data = forecast_data(2, "numpy", values, transform="auto", epochs=3)
    assert f"| LSTM, median of 2 seeds' metrics | one-step | {data['median']['one-step']['RMSE']:.1f} |" in out
    ensemble = data["metrics"]["LSTM ensemble (median of 2 seeds' forecasts)"]["24-step"]
    assert f"| 24-step | {ensemble['RMSE']:.1f} | {ensemble['MAE']:.1f} |" in out
    assert "Holt-Winters and the airline model: not computed (they need positive values)" in out


def test_the_forecast_command_refuses_data_without_a_column_in_one_sentence(tmp_path, capsys):
    path = write_column(tmp_path / "series.csv", "count", np.arange(80.0))
    assert forecast_main(["--data", str(path)]) == 2
    assert capsys.readouterr().err == ("parallel-lstm forecast: error: --data and --column go together: give the CSV "
                                       "file and the name of its numeric column.\n")
    assert forecast_main(["--data", str(path), "--column", "count", "--backend", "cobol"]) == 2
    assert "unknown backend 'cobol'" in capsys.readouterr().err
