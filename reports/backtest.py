"""How the forecast's setting was chosen, without the test months: a backtest.

The series is cut before the 24 test months (months 0..119). Inside that cut the same
pipeline holds out its own last 24 months (96..119) as a pseudo-test, validates on the 12
before (84..95) and trains on the rest. Every candidate setting trains seeds 0..9 and is
scored by

    score = median over seeds of the one-step RMSE + median over seeds of the 24-step RMSE

on the pseudo-test months (lower is better). The ensemble (the seeds' forecasts' median,
month by month) is printed beside it. The 12 validation months alone proved too few to
choose a setting that forecasts 24 months; they serve early stopping.

Stage 1 is a grid: the difference lags (1: monthly changes; 1 and 12: the airline model's
(1 - B)(1 - B^12), see data/light.py), hidden size, learning rate, batch size and
forget-gate bias, each trained for a fixed 300 epochs, or with early stopping (the epoch
with the lowest validation loss is kept) within at most 300 or 600 epochs. Of settings with
equal scores the one listed first wins. Stage 2 tries one change at a time on the stage-1
winner (transform none instead of log, a 24-month window, gradient clipping at norm 1,
lag 12 alone) and keeps a change only when it lowers the score.

The scores are numba_cpu's. Training here is sometimes chaotic: for some seeds a
last-bit difference between two backends' sums grows over the epochs until they end in
different models (even with the former defaults, seeds 6, 7 and 9 of the full workload
end with losses that differ by 10% or more between numpy and numba_cpu), so for such a
seed another backend scores differently.

    parallel-lstm backtest            # both stages; prints every setting's score and the choice

Second search on 2026-11-23, with the difference lags (numba_cpu; score = median one-step +
median 24-step RMSE, thousands of passengers; the classical models on the same pseudo-test
months: Holt-Winters 14.3 + 18.7 = 33.0, the airline model 12.5 + 28.8 = 41.3):

    chosen   lags 1 and 12, hidden 16, lr 0.1, batch 16, forget bias 0, early stopping within 300
             epochs: one-step 10.5, 24-step 13.5, score 24.0 (ensemble 10.4, 13.3); within 600 the
             same.
    next     lags 1 and 12, hidden 8, lr 0.1, batch 16, forget bias 0, early stopping within 300: 25.5
             lags 1 and 12, hidden 16, lr 0.1, batch 16, forget bias 2, early stopping: 26.3
    lag 1    the best of its 48 grid points is still the first search's choice below, 42.3

The 32 early-stopped grid points with lags 1 and 12 score 24.0 to 42.5, all but that 42.5 below
42.3; the 16 with a fixed 300 epochs score 35.0 to 144.9: they overfit, and their recursive
forecasts run away (the chosen setting's seeds reach their lowest validation loss at epochs 65
to 227; trained to 300, their 24-step RMSE is 14 to 94). The model that always forecasts the training mean
change (scaled 0, the seasonal random walk with drift) scores 10.1 + 30.9 = 41.0: the LSTM's
gain is mostly the 24-step forecast. Stage 2 kept nothing: transform none 29.8, a 24-month window
38.6, clipping at norm 1 24.6, lag 12 alone 63.6. On seeds 10..19 the chosen setting scores
10.5 + 16.6 = 27.1 (ensemble 10.5, 14.8), the first search's choice 17.9 + 29.0 = 46.9.
Lag 12 alone was also tried before the grid, on the first search's choice (lr 0.2, batch 8,
forget bias 2, early stopping): 18.2 + 36.0 = 54.2 (ensemble 17.4, 31.3), and with the timing
workload's lr 0.1, batch 16, forget bias 2: 73.6 for 300 epochs, 64.9 with early stopping; with
lr 0.2, batch 8 for 300 epochs 76.6. The yearly change of log passengers drifts down over the
years (0.06 to 0.20 in 1950-1957, training mean 0.13; 0.03 in 1958), so a model of it reverts
toward a training mean that the pseudo-test year is far below.

The chosen setting's one evaluation on the test months (numpy, seeds 0..9) did not hold up for
24 steps: median one-step RMSE 18.6, 24-step 127.7 (seeds 97.8 to 177.2; ensemble 18.5, 127.7),
against 19.8 and 34.4 for the former lag-1 defaults. Lags 1 and 12 repeat the last year's monthly
changes, and 1958, the year before the test months, hardly grew while 1959-1960 grew by about 13%
a year; even the scaled-0 model scores 70.2 there. The pseudo-test, 1957-1958, slowed down as the
year before it had, which favoured exactly this. One forecast origin is too few to choose the
differencing by; a backtest over several origins would be needed before trusting lags 1 and 12.

First search, 2026-11-23, lag 1 only (the 48 lag-1 grid points of the second search; its
first 14 and the choice, rerun for the second, gave the same scores):

    chosen   hidden 16, lr 0.2, batch 8, forget bias 2, early stopping within 300 epochs:
             one-step 17.6, 24-step 24.7, score 42.3 (ensemble 16.6, 18.8); with a 600-epoch cap the
             same (every seed stops before epoch 300)
    next     hidden 16, lr 0.1, batch 16, forget bias 0, early stopping within 600: 42.9
             hidden 8, lr 0.1, batch 8, forget bias 2, early stopping within 600: 43.6
    former   hidden 16, lr 0.1, batch 16, forget bias 2, 300 epochs: 24.2 + 28.6 = 52.8
             (ensemble 21.8, 24.6)

Against a fixed 300 epochs, early stopping lowered the score for 12 of the 16 grid points
within 300 epochs and for 15 of 16 within 600; the 48 scores range from 42.3 to 74.0. Stage 2
kept nothing: transform none 50.1, a 24-month window 56.4, clipping at norm 1 48.4. Scores
move by several points with the seeds alone (on seeds 10..19 the former defaults score 65.3,
four settings stopped early within 600 epochs 45.5 to 48.8, the chosen one among them 48.8),
so close neighbours in the grid are not told apart; early stopping's gain held on both sets.
"""
from __future__ import annotations

import itertools
import sys

import numpy as np

from parallel_lstm.data import airpassengers
from parallel_lstm.lstm_numpy import get_backend

from .commands import prog
from .options import OneSentenceParser, parse_or_exit, positive_int, run_tool

from .forecast import FIRST_TEST, HORIZON, describe, ensemble_forecast, forecast_run, metrics

SEEDS = range(10)
GRID = {"difference": ((1,), (1, 12)), "hidden": (8, 16), "lr": (0.1, 0.2), "batch_size": (8, 16),
        "forget_bias": (0.0, 2.0)}
TRAINING = ({"epochs": 300, "early_stopping": False}, {"epochs": 300, "early_stopping": True},
            {"epochs": 600, "early_stopping": True})
CHANGES = ({"transform": "none"}, {"seq_len": 24}, {"clip_norm": 1.0}, {"difference": (12,)})


def grid_settings() -> list[dict]:
    """Stage 1's settings: every GRID combination with each TRAINING choice."""
    return [{**dict(zip(GRID, values)), **training}
            for values in itertools.product(*GRID.values()) for training in TRAINING]


def backtest_score(setting: dict, seeds=SEEDS, backend: str = "numba_cpu", threads: int | None = None) -> dict:
    """One setting on the pseudo-test months 96..119: the seeds' median one-step and 24-step RMSE, their
    sum (the score) and the ensemble's RMSE."""
    series = airpassengers()[:FIRST_TEST]
    options = {} if threads is None else {"threads": threads}
    runs = [forecast_run(seed, backend, series, **setting, **options) for seed in seeds]
    median = {h: float(np.median([r.metrics[h]["RMSE"] for r in runs])) for h in ("one-step", "24-step")}
    first = FIRST_TEST - HORIZON
    ensemble = {h: metrics(f, series[first:], series, first)["RMSE"] for h, f in ensemble_forecast(runs).items()}
    return {"one-step": median["one-step"], "24-step": median["24-step"],
            "score": median["one-step"] + median["24-step"], "ensemble": ensemble}


def report_line(setting: dict, result: dict) -> str:
    return (f"{describe(setting)}: one-step {result['one-step']:.1f}, 24-step {result['24-step']:.1f}, "
            f"score {result['score']:.1f} | ensemble one-step {result['ensemble']['one-step']:.1f}, "
            f"24-step {result['ensemble']['24-step']:.1f}")


def search(score=backtest_score, echo=print) -> tuple[dict, dict]:
    """Both stages (see the module docstring); ``score(setting)`` scores one setting. Returns the chosen
    setting and its result."""
    echo("stage 1: grid")
    best, best_result = None, None
    for setting in grid_settings():
        result = score(setting)
        echo(report_line(setting, result))
        if best is None or result["score"] < best_result["score"]:   # on a tie the earlier (shorter) one stays
            best, best_result = setting, result
    echo(f"stage 2: one change at a time on {describe(best)}")
    for change in CHANGES:
        candidate = {**best, **change}
        result = score(candidate)
        echo(report_line(candidate, result))
        if result["score"] < best_result["score"]:
            best, best_result = candidate, result
    echo(f"chosen: {report_line(best, best_result)}")
    return best, best_result


def main(argv=None) -> int:
    parser = OneSentenceParser(prog=prog("backtest"), description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba_cpu",
                        help="backend that trains (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for numba_cpu (default: Numba's)")
    args, exit_code = parse_or_exit(parser, sys.argv[1:] if argv is None else list(argv))
    if args is None:
        return exit_code

    def work():
        get_backend(args.backend)   # an unknown backend is refused before the search starts
        search(lambda setting: backtest_score(setting, backend=args.backend, threads=args.threads),
               echo=lambda line: print(line, flush=True))
        return 0
    return run_tool(prog("backtest"), work, "interrupted ({reason}); the scores printed so far stand")


if __name__ == "__main__":
    sys.exit(main())
