"""The statsmodels baselines: fitted before the test months only, one-step from actual history, optional."""
import importlib.util
import sys

import numpy as np
import pytest

from parallel_lstm.data import airpassengers
from parallel_lstm.lstm_numpy import UserError
from parallel_lstm.reports.baselines import AIRLINE, HOLT_WINTERS, classical_forecasts

needs_statsmodels = pytest.mark.skipif(importlib.util.find_spec("statsmodels") is None,
                                       reason="the classical baselines need the optional statsmodels")


@pytest.fixture(scope="module")
def forecasts():
    return classical_forecasts(airpassengers(), 120, 24)


def rmse(forecast):
    return float(np.sqrt(np.mean((forecast - airpassengers()[120:]) ** 2)))


@needs_statsmodels
def test_they_reproduce_the_figures_measured_elsewhere_on_this_split(forecasts):
    # Figures measured independently on the same split (fit on months 0..119, forecast 120..143).
    assert round(rmse(forecasts[HOLT_WINTERS]["24-step"]), 1) == 32.5
    assert round(rmse(forecasts[AIRLINE]["24-step"]), 1) == 43.2
    assert round(rmse(forecasts[AIRLINE]["one-step"]), 1) == 15.3


@needs_statsmodels
@pytest.mark.parametrize("name", [HOLT_WINTERS, AIRLINE])
def test_one_step_and_24_step_start_from_the_same_fitted_state(forecasts, name):
    assert forecasts[name]["one-step"][0] == pytest.approx(forecasts[name]["24-step"][0], rel=1e-9)
    assert not np.allclose(forecasts[name]["one-step"][1:], forecasts[name]["24-step"][1:])


@needs_statsmodels
def test_no_forecast_sees_its_own_month_or_a_later_one(forecasts):
    altered = airpassengers().copy()
    altered[130:] *= 1.5
    again = classical_forecasts(altered, 120, 24)
    for name in (HOLT_WINTERS, AIRLINE):
        np.testing.assert_array_equal(again[name]["24-step"], forecasts[name]["24-step"])
        np.testing.assert_allclose(again[name]["one-step"][:11], forecasts[name]["one-step"][:11], rtol=1e-12)
        assert abs(again[name]["one-step"][11] / forecasts[name]["one-step"][11] - 1) > 0.1


def test_without_statsmodels_there_are_no_classical_forecasts(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels", None)   # makes "import statsmodels" raise ImportError
    assert classical_forecasts(airpassengers(), 120, 24) is None


def test_a_series_with_zeros_is_refused_in_one_sentence():
    with pytest.raises(UserError, match="need a series of positive values"):
        classical_forecasts(np.r_[airpassengers()[:-1], 0.0], 120, 24)
