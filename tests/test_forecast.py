"""Forecast metrics against hand-computed values, baselines against their definitions."""
import numpy as np
import pytest

from data import airpassengers
from reports.forecast import baseline_metrics, forecast_run, metrics, persistence, seasonal_naive


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


def test_baselines_reproduce_the_published_airpassengers_figures():
    b = baseline_metrics(airpassengers())
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


def test_the_backtest_scores_inside_the_pre_test_months(monkeypatch):
    import reports.backtest as bt
    seen = []
    real = bt.make_workload

    def spy(name, **kw):
        seen.append(kw["series"].size)
        return real(name, **kw)

    monkeypatch.setattr(bt, "make_workload", spy)
    one, rec, total = bt.backtest_score({"epochs": 2}, seeds=[0])
    assert seen == [120], "the backtest must never see the 24 test months"
    assert total == pytest.approx(one + rec) and one > 0 and rec > 0
